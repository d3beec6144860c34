# ksqlDB topology (ksql/) and the KSQL ConfigMap operator (operators/ksql). See docs/ksql-operator.md.
# The `ksql` shell into the cluster is the Kubernetes fragment's target, not this one.

KSQL_DIR ?= $(ROOT)/ksql
KSQL_CONFIGMAP ?= marketing-engine-ksql
KSQL_NAMESPACE ?= marketing-engine

.PHONY: ksql-plan ksql-segments ksql-check ksql-configmap test-ksql

ksql-plan: venv ## dry run: the statements the operator would apply for ksql/ (KSQLDB_URL=... diffs a live server)
	@$(PY) -m operators.ksql.plan --dry-run $(if $(KSQLDB_URL),--server $(KSQLDB_URL)) $(KSQL_DIR)

ksql-segments: venv ## regenerate the segment CASE in ksql/*.sql from ksql/segments.yaml
	@$(PY) -m operators.ksql.segments --write $(KSQL_DIR)

ksql-check: venv ## ksql/ parses, is in dependency order, and its segment block matches segments.yaml
	@$(PY) -m operators.ksql.segments --check $(KSQL_DIR)
	@$(PY) -m operators.ksql.plan --no-sql $(KSQL_DIR) >/dev/null && echo "ksql: $(KSQL_DIR) ok"

ksql-configmap: venv ## print ksql/ as the labelled ConfigMap the operator watches (| kubectl apply -f -)
	@$(PY) -m operators.ksql.configmap --name $(KSQL_CONFIGMAP) --namespace $(KSQL_NAMESPACE) $(KSQL_DIR)

test-ksql: venv ## the ksql topology and operator tests (unit + against the ksqlDB test double)
	@$(PYTEST) -q tests/unit/test_ksql_*.py tests/unit/test_operator_*.py tests/engines/test_operator_*.py
