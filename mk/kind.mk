# Kubernetes packaging: the kind cluster, images, the marketing-engine chart, the third-party charts
# and the in-cluster shells. docs/kubernetes.md explains every target. All targets are idempotent.
#
#   make kind-up                 # cluster + images + Redpanda + Spark Operator + Kafka UI + chart + pipeline + seed
#   make kind-up VALUES=my.yaml  # the same with your overrides of charts/marketing-engine/values.yaml
#   make kind-down               # delete the cluster (./data/delta stays)
#   make kind-clean-delta        # then empty ./data/delta (start over)

KIND_CLUSTER ?= marketing-engine
NAMESPACE    ?= marketing-engine
RELEASE      ?= marketing-engine
# Tags of our images: the chart's images.{app,spark}.tag (0.1.0) plus a digest of each image's build
# inputs (scripts/image-tag.sh), so a rebuilt image is a new tag and `make kind-up` rolls it out.
APP_IMAGE_TAG   ?= $(shell scripts/image-tag.sh app)
SPARK_IMAGE_TAG ?= $(shell scripts/image-tag.sh spark)
VALUES       ?=
# Host port of the web UI: kind-config.yaml maps it to the web Service's nodePort (the same number).
# Not 5000, which AirPlay Receiver holds on macOS 12+.
WEB_HOST_PORT := 30500
# Third-party charts, from their official repositories (scripts/kind-up.sh).
REDPANDA_CHART_VERSION       := 26.2.2
SPARK_OPERATOR_CHART_VERSION := 2.5.2
KAFKA_UI_CHART_VERSION       := 1.5.2
# Requests of the default stack with kind's own pods, and the Docker memory they need
# (tests/manifests/test_budget_memory.py computes and prints them; kind-up warns when Docker has less).
MEMORY_REQUEST_MIB ?= 7666
CPU_REQUEST_M      ?= 2560
DOCKER_MEMORY_GIB  ?= 8

# Helm: the one on PATH, else the pinned build in .cache/bin (make helm-tool).
HELM_VERSION := v4.3.1
HELM_TOOL    := $(CACHE)/bin/helm
HELM          = $(or $(shell command -v helm 2>/dev/null),$(HELM_TOOL))
KIND_KUBECTL  = kubectl --context kind-$(KIND_CLUSTER) -n $(NAMESPACE)
KIND_ENV      = KIND_CLUSTER=$(KIND_CLUSTER) NAMESPACE=$(NAMESPACE) RELEASE=$(RELEASE) HELM="$(HELM)" \
                APP_IMAGE_TAG=$(APP_IMAGE_TAG) SPARK_IMAGE_TAG=$(SPARK_IMAGE_TAG) IMAGE_TAG=$(SPARK_IMAGE_TAG) \
                VALUES="$(VALUES)" HELM_VERSION=$(HELM_VERSION) WEB_HOST_PORT=$(WEB_HOST_PORT) \
                REDPANDA_CHART_VERSION=$(REDPANDA_CHART_VERSION) \
                SPARK_OPERATOR_CHART_VERSION=$(SPARK_OPERATOR_CHART_VERSION) \
                KAFKA_UI_CHART_VERSION=$(KAFKA_UI_CHART_VERSION) MEMORY_REQUEST_MIB=$(MEMORY_REQUEST_MIB) \
                CPU_REQUEST_M=$(CPU_REQUEST_M) DOCKER_MEMORY_GIB=$(DOCKER_MEMORY_GIB)

# The manifests tier renders the chart with the pinned Helm.
TEST_MANIFESTS_DEPS += $(HELM_TOOL) chart-sync
TEST_CLUSTER_DEPS += $(HELM_TOOL) chart-sync

.PHONY: kind-up kind-down kind-clean-delta kind-seed images pipeline ui spark-sql ksql status logs helm-tool chart-sync chart-render verify verify-local consistency forget

kind-up: ## kind cluster + images + Redpanda, Spark Operator, Kafka UI + our chart + pipeline + seed; prints the URLs
	@$(KIND_ENV) scripts/kind-up.sh

verify: ## prove the running stack: a probe customer through Kafka, ksqlDB, web UI, bronze/silver/gold, score; PASS n/n
	@$(KIND_ENV) scripts/verify.sh

verify-local: venv ## the same verify against the endpoints in the environment (KAFKA_BOOTSTRAP_SERVERS, KSQLDB_URL, WEB_URL, ...)
	@$(PY) -m verify

consistency: ## run the consistency check now (ksqlDB's view vs gold C360; a Job from its CronJob) and print its report
	@$(KIND_ENV) scripts/consistency.sh

forget: ## forget a customer: CUSTOMER=<id>; request, erasure job now, its report and a check of the cache and ksqlDB
	@$(KIND_ENV) CUSTOMER="$(CUSTOMER)" scripts/forget.sh

kind-clean-delta: ## empty ./data/delta (the Delta tables; owned by Spark's uid 185) from a container; cluster down first
	@$(KIND_ENV) scripts/kind-clean-delta.sh

kind-down: ## delete the kind cluster (the Delta tables in ./data/delta stay)
	@if command -v kind >/dev/null 2>&1 && kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
	  kind delete cluster --name '$(KIND_CLUSTER)'; \
	else echo "kind-down: no cluster '$(KIND_CLUSTER)'"; fi

images: ## build the marketing-engine/app and /spark images (content tags, scripts/image-tag.sh) and kind-load them
	@command -v docker >/dev/null 2>&1 || { echo "images: docker not found (https://docs.docker.com/get-docker/)"; exit 1; }
	docker build -f images/app/Dockerfile -t marketing-engine/app:$(APP_IMAGE_TAG) .
	docker build -f images/spark/Dockerfile -t marketing-engine/spark:$(SPARK_IMAGE_TAG) .
	@if command -v kind >/dev/null 2>&1 && kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
	  kind load docker-image --name '$(KIND_CLUSTER)' marketing-engine/app:$(APP_IMAGE_TAG) marketing-engine/spark:$(SPARK_IMAGE_TAG); \
	else echo "images: built; no kind cluster '$(KIND_CLUSTER)' to load them into yet"; fi

# Rendered from the chart (spark/k8s/ is that rendering with the default values, tested) so the
# SparkApplications name the Spark image's content tag: a rebuilt image changes their spec and the
# Spark Operator resubmits them.
pipeline: chart-sync ## apply the four SparkApplication CRs (= spark/k8s/ with the image's content tag) and the scheduled erasure; PIPELINE_VALUES=file adds your values
	@"$(HELM)" template $(RELEASE) charts/marketing-engine -n $(NAMESPACE) --set pipeline.enabled=true \
	  --set managedBy=kubectl --set images.spark.tag=$(SPARK_IMAGE_TAG) $(if $(PIPELINE_VALUES),-f "$(PIPELINE_VALUES)") \
	  --show-only templates/spark-applications.yaml --show-only templates/spark-erasure.yaml | $(KIND_KUBECTL) apply -f -

kind-seed: ## run the in-cluster seed Job again (a copy of the chart's Job; change sizes with helm --set seed.*)
	@job=$$($(KIND_KUBECTL) get jobs -l app.kubernetes.io/instance=$(RELEASE),app.kubernetes.io/component=seed \
	  -o jsonpath='{.items[0].metadata.name}' 2>/dev/null); \
	[ -n "$$job" ] || { echo "kind-seed: no seed Job in $(NAMESPACE) (is the chart installed with seed.enabled=true?)"; exit 1; }; \
	new="$(RELEASE)-seed-run-$$(date +%s)"; \
	$(KIND_KUBECTL) create job "$$new" --from=job/$$job && \
	echo "kind-seed: started Job $$new; follow it with: $(KIND_KUBECTL) logs -f job/$$new"

ui: ## open the web UI: http://localhost:30500 (kind port mapping), else a port-forward to it
	@if curl -fsS -m 2 http://localhost:$(WEB_HOST_PORT)/healthz >/dev/null 2>&1; then \
	  echo "Web UI: http://localhost:$(WEB_HOST_PORT)   Kafka UI: http://localhost:8080"; \
	else echo "port-forward: http://localhost:$(WEB_HOST_PORT) (Ctrl-C to stop)"; \
	  $(KIND_KUBECTL) port-forward svc/$(RELEASE)-web $(WEB_HOST_PORT):5000; fi

spark-sql: ## Spark SQL shell in the cluster over the Delta tables (ARGS="-e 'SELECT ...'")
	@$(KIND_ENV) scripts/kind-spark-sql.sh $(ARGS)

ksql: ## ksql CLI in the cluster, connected to ksqlDB
	@# The CLI runs inside the server's container: a small heap of its own, not the server's KSQL_HEAP_OPTS.
	@$(KIND_KUBECTL) exec -it deploy/$(RELEASE)-ksqldb -- env KSQL_HEAP_OPTS="-Xms64m -Xmx192m" ksql http://localhost:8088

status: ## releases, pods, SparkApplications, jobs; the cache lag and each Spark layer's freshness (the feeder's status)
	@"$(HELM)" list -A --kube-context kind-$(KIND_CLUSTER) 2>/dev/null || true
	@for ns in redpanda spark-operator kafka-ui $(NAMESPACE); do \
	  echo "== $$ns"; kubectl --context kind-$(KIND_CLUSTER) -n $$ns get pods -o wide 2>/dev/null || true; done
	@echo "== SparkApplications"; $(KIND_KUBECTL) get sparkapplications 2>/dev/null || true
	@echo "== Jobs"; $(KIND_KUBECTL) get jobs 2>/dev/null || true
	@echo "== Pipeline (the feeder's view: cache lag, Spark layers' freshness)"; \
	  $(KIND_KUBECTL) exec deploy/$(RELEASE)-web-feeder -- python -m webapp.pipeline_status 2>&1 || true

logs: ## recent logs of every component, or follow one: make logs C=web|ksqldb|ksql-operator|redis|seed|topics|spark-bronze|...
	@if [ -n "$(C)" ]; then \
	  $(KIND_KUBECTL) logs -f --tail=200 --prefix --max-log-requests=10 -l app.kubernetes.io/instance=$(RELEASE),app.kubernetes.io/component=$(C); \
	else for c in ksqldb ksql-operator redis web consistency topics seed spark-bronze spark-silver spark-gold spark-score; do \
	  echo "== $$c"; $(KIND_KUBECTL) logs --tail=20 --prefix --max-log-requests=10 \
	    -l app.kubernetes.io/instance=$(RELEASE),app.kubernetes.io/component=$$c 2>&1 || true; done; fi

helm-tool: $(HELM_TOOL) ## build the pinned Helm (HELM_VERSION) into .cache/bin with go install

# go install (Go module proxy), pinned; the stamp file records the version so a bump rebuilds.
$(HELM_TOOL): $(CACHE)/bin/.helm-$(HELM_VERSION)
$(CACHE)/bin/.helm-$(HELM_VERSION):
	@command -v go >/dev/null 2>&1 || { echo "helm-tool: Go is needed to build Helm $(HELM_VERSION) (or install Helm: https://helm.sh/docs/intro/install/)"; exit 1; }
	@echo "helm-tool: go install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION) -> $(CACHE)/bin (several minutes the first time)"
	@mkdir -p $(CACHE)/bin $(CACHE)/go
	@GOBIN=$(CACHE)/bin GOMODCACHE=$(CACHE)/go/mod GOCACHE=$(CACHE)/go/build GOFLAGS=-mod=mod CGO_ENABLED=0 \
	  go install -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$(HELM_VERSION)" \
	  helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	@rm -f $(CACHE)/bin/.helm-* && touch $@ && touch $(HELM_TOOL)
	@$(HELM_TOOL) version --short

chart-sync: ## copy ksql/*.sql into the chart (charts/marketing-engine/files/ksql/): Helm reads only files in the chart
	@mkdir -p charts/marketing-engine/files/ksql
	@rm -f charts/marketing-engine/files/ksql/*.sql
	@cp ksql/*.sql charts/marketing-engine/files/ksql/
	@echo "chart-sync: $$(ls ksql/*.sql | wc -l | tr -d ' ') ksql files -> charts/marketing-engine/files/ksql/"

chart-render: chart-sync $(HELM_TOOL) ## render the SparkApplication CRs into spark/k8s/ (commit them; a test compares)
	@HELM=$(HELM_TOOL) NAMESPACE=$(NAMESPACE) RELEASE=$(RELEASE) scripts/helm-render-pipeline.sh spark/k8s
