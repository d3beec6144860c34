# Seed: behavioural customer simulator + Avro publisher (seed/). Endpoints come from the environment
# (REST_PROXY_URL, SCHEMA_REGISTRY_URL, KAFKA_BOOTSTRAP_SERVERS, PUBLISH_TRANSPORT, ...; see
# seed/settings.py); command-line options go in ARGS, e.g.
#   make seed ARGS="--customers 500 --days 30 --rate 200"
#   REST_PROXY_URL=http://localhost:30082 SCHEMA_REGISTRY_URL=http://localhost:30081 make seed
# The ground truth (hidden traits + labels) goes to SEED_GROUND_TRUTH, by default under data/ (git-ignored).

export SEED_GROUND_TRUTH ?= $(ROOT)/data/seed/ground_truth.csv

.PHONY: seed seed-dry-run

seed: venv ## simulate customers and publish their events to the endpoints in the environment (ARGS="--customers N ...")
	@$(PY) -m seed $(ARGS)

seed-dry-run: venv ## print sample seed events as JSON and write the ground truth, publish nothing (ARGS=...)
	@$(PY) -m seed --dry-run $(ARGS)
