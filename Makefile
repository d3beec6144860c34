# Marketing Engine — every user-facing command. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT      := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV      := $(ROOT)/.venv
PY        := $(VENV)/bin/python
PYTEST    := $(PY) -m pytest
CACHE     := $(ROOT)/.cache
JARS      := $(CACHE)/jars
MVN       := mvn -q -B -Dmaven.repo.local=$(CACHE)/m2
export PIP_CACHE_DIR := $(CACHE)/pip
export SPARK_JARS_DIR ?= $(JARS)/spark
# pytest exit 5 = "no tests collected": a tier that has no tests yet is not a failure.
PYTEST_OK := ret=$$?; [ $$ret -eq 0 -o $$ret -eq 5 ] || exit $$ret

# Component fragments add targets and tier prerequisites (TEST_ENGINES_DEPS, TEST_MANIFESTS_DEPS,
# TEST_CLUSTER_DEPS: tools such as helm or kube-apiserver that a tier installs when missing).
TEST_ENGINES_DEPS :=
TEST_MANIFESTS_DEPS :=
TEST_CLUSTER_DEPS :=
include $(sort $(wildcard $(ROOT)/mk/*.mk))

.PHONY: help deps venv jars lint test test-unit test-engines test-manifests test-cluster bench clean

help: ## list the targets
	@awk 'BEGIN{FS=":[^#]*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: venv jars ## virtualenv + pinned Python deps + jars from Maven Central (idempotent, cached in .cache/)

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip==25.3
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@
	@echo "venv: $(VENV) ready"

jars: $(JARS)/spark/.installed $(JARS)/kafka/.installed ## resolve the pinned jars (jars/*.xml) into .cache/jars
$(JARS)/spark/.installed: jars/spark-pom.xml
	@rm -rf $(JARS)/spark && $(MVN) -f jars/spark-pom.xml dependency:copy-dependencies -DoutputDirectory=$(JARS)/spark
	@touch $@ && echo "jars: $$(ls $(JARS)/spark/*.jar | wc -l) Spark jars in $(JARS)/spark"
$(JARS)/kafka/.installed: jars/kafka-pom.xml
	@rm -rf $(JARS)/kafka && $(MVN) -f jars/kafka-pom.xml dependency:copy-dependencies -DoutputDirectory=$(JARS)/kafka
	@touch $@ && echo "jars: $$(ls $(JARS)/kafka/*.jar | wc -l) Kafka broker jars in $(JARS)/kafka"

lint: venv ## ruff over the whole tree
	@$(VENV)/bin/ruff check .

# The tiers `make test` runs, in order (test-images: mk/images.mk).
TEST_TIERS := test-unit test-engines test-manifests test-images test-cluster

test: deps lint ## every test tier (installs what it needs first); prints each tier's time
	@times=""; for tier in $(TEST_TIERS); do start=$$SECONDS; \
	  $(MAKE) --no-print-directory $$tier || { echo "make test: $$tier failed after $$((SECONDS - start))s"; exit 1; }; \
	  took="$$tier $$((SECONDS - start))s"; times="$${times:+$$times, }$$took"; echo "make test: $$took"; \
	done; echo "make test: all tiers passed ($$times)"

test-unit: venv ## tier 1: pure functions
	@$(PYTEST) tests/unit -q; $(PYTEST_OK)

test-engines: deps $(TEST_ENGINES_DEPS) ## tier 2: real Kafka broker, redis-server, Spark + Delta, Chromium
	@$(PYTEST) tests/engines -q; $(PYTEST_OK)

test-manifests: venv $(TEST_MANIFESTS_DEPS) ## tier 3: helm lint/template, Kubernetes + CRD schema and policy checks
	@$(PYTEST) tests/manifests -q; $(PYTEST_OK)

test-cluster: venv $(TEST_CLUSTER_DEPS) ## tier 4: real kube-apiserver + etcd
	@$(PYTEST) tests/cluster -q; $(PYTEST_OK)

bench: deps ## run every benchmark under bench/ and print its figures
	@for b in bench/bench_*.py; do m=$${b%.py}; echo "== $${m//\//.}"; $(PY) -m $${m//\//.} || exit 1; done

clean: ## remove caches, venv and test output (downloads are fetched again)
	rm -rf $(VENV) $(CACHE) test-output .pytest_cache .ruff_cache

