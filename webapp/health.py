"""Probes: /healthz (the process answers) and /readyz (it can serve fresh data)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness: never depends on Redis or Kafka (restarting the pod would not bring them back)."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Readiness: Redis answers; and when this process feeds the cache: the consumer thread is alive
    and running, Kafka is reachable, and the lag is within READY_MAX_LAG (when set). 503 + reasons."""
    rt = current_app.extensions["marketing_engine"]
    health = rt.health()
    reasons = list(health.problems)
    consumer = health.consumer
    max_lag = rt.settings.ready_max_lag
    if consumer is not None and max_lag and consumer["lag"] is not None and consumer["lag"] > max_lag:
        reasons.append(f"consumer lag {consumer['lag']} exceeds READY_MAX_LAG={max_lag}")
    body = {
        "ready": not reasons,
        "reasons": reasons,
        "redis": {"ok": health.redis_ok, "reason": health.redis_reason},
        "kafka": {"ok": health.kafka_ok, "reason": consumer["kafka_reason"] if consumer else None},
        "consumer": None if consumer is None else {
            k: consumer[k] for k in ("alive", "state", "group", "lag", "lag_by_partition", "assigned", "restarts",
                                     "last_error", "records", "malformed", "batches", "commit_failures")
        },
        "cache_version": health.version,
    }
    return jsonify(body), (200 if not reasons else 503)
