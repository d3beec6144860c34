# Web UI (webapp/): Flask app (gunicorn) reading a Redis cache that one feeder process (python -m webapp.feeder)
# writes from Kafka. Two processes: run `make webapp-feeder` beside `make webapp-dev`. Endpoints and options come
# from the environment (see webapp/settings.py: REDIS_URL, KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL,
# REST_PROXY_URL, PUBLISH_TRANSPORT, SECRET_KEY, APP_ENV, CONSUMER_GROUP, CACHE_RESET_ON_START, PORT, ...), e.g.
#   REDIS_URL=redis://localhost:6379/0 KAFKA_BOOTSTRAP_SERVERS=localhost:31092 \
#   SCHEMA_REGISTRY_URL=http://localhost:30081 REST_PROXY_URL=http://localhost:30082 make webapp-dev

WEBAPP_TESTS := tests/unit/test_webapp_*.py tests/engines/test_webapp_*.py

.PHONY: webapp-dev webapp-feeder webapp-serve webapp-test webapp-bench

webapp-dev: venv ## web UI development server on PORT (default 5000; on macOS pick another, AirPlay holds 5000), APP_ENV=development
	@APP_ENV=$${APP_ENV:-development} $(PY) -m webapp

webapp-feeder: venv ## the cache's one writer: Kafka -> Redis (health on FEEDER_HEALTH_PORT, default 8081)
	@$(PY) -m webapp.feeder

webapp-serve: venv ## web UI under gunicorn as in the image (needs SECRET_KEY; WEB_WORKERS, WEB_THREADS)
	@$(VENV)/bin/gunicorn -c python:webapp.gunicorn_conf

webapp-test: deps ## web UI tests: unit, real Kafka + redis-server, gunicorn, headless Chromium (screenshots in test-output/)
	@$(PYTEST) $(WEBAPP_TESTS) -q

webapp-bench: venv ## web UI latency at 10k cached customers: API, list, insights, customer page vs a trivial route
	@$(PY) -m bench.bench_webapp $(ARGS)
