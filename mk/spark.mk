# The Spark jobs on this machine, against the endpoints in the environment (a port-forwarded
# cluster, kind's NodePorts, or the test broker): KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL, DELTA_ROOT.
DELTA_ROOT ?= $(ROOT)/data/delta
export DELTA_ROOT
SPARK_JOBS := bronze silver gold score

.PHONY: pipeline-local spark-sql-local train evaluate
pipeline-local: deps ## run bronze, silver, gold and score locally (one driver each; Ctrl-C stops all; logs in data/logs)
	@mkdir -p $(ROOT)/data/logs
	@trap 'kill 0' INT TERM EXIT; \
	for job in $(SPARK_JOBS); do \
	  echo "pipeline-local: $$job -> data/logs/$$job.log"; \
	  $(PY) -m spark.jobs.$$job > $(ROOT)/data/logs/$$job.log 2>&1 & \
	done; \
	wait -n; echo "pipeline-local: a job stopped; see data/logs/" >&2; exit 1

spark-sql-local: deps ## Spark SQL shell over the Delta tables under DELTA_ROOT, registered by name (ARGS="-e 'SELECT ...'")
	@$(PY) -m spark.sql_shell $(ARGS)

train: deps ## train and save a new propensity model version from silver (DELTA_ROOT)
	@$(PY) -m spark.jobs.train

evaluate: deps ## model vs RFM baseline on the seed's ground truth: AUC and precision at the top decile (GROUND_TRUTH=...)
	@$(PY) -m spark.jobs.evaluate --ground-truth $(or $(GROUND_TRUTH),$(ROOT)/data/seed/ground_truth.csv)
