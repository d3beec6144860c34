"""Probes: /healthz (the process answers) and /readyz (it can serve fresh data)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness: never depends on Redis or the feeder (restarting the pod would not bring them back)."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Readiness: Redis answers, and the feeder reports fresh status, running, with Kafka reachable and
    the lag within READY_MAX_LAG (when set). 503 + reasons otherwise."""
    rt = current_app.extensions["marketing_engine"]
    health = rt.health()
    reasons = list(health.problems)
    feeder = health.feeder
    max_lag = rt.settings.ready_max_lag
    if feeder is not None and health.feeder_fresh and max_lag and feeder.lag is not None and feeder.lag > max_lag:
        reasons.append(f"feeder lag {feeder.lag} exceeds READY_MAX_LAG={max_lag}")
    body = {
        "ready": not reasons,
        "reasons": reasons,
        "redis": {"ok": health.redis_ok, "reason": health.redis_reason},
        "feeder": None if feeder is None else {
            "state": feeder.state, "fresh": health.feeder_fresh, "age_s": health.feeder_age_s,
            "kafka_ok": feeder.kafka_ok, "lag": feeder.lag, "instance": feeder.instance,
        },
        "cache_version": health.version,
    }
    return jsonify(body), (200 if not reasons else 503)
