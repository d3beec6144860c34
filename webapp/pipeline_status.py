"""``python -m webapp.pipeline_status``: the pipeline's health as text, from the feeder's /status (what
the insights page shows): per source topic the cache's lag and records, per Spark query its newest
committed batch and how fresh it is, and the newest consistency report (ksqlDB's view against gold
C360, ``python -m consistency``). ``make status`` runs it inside the feeder's pod.

Usage: python -m webapp.pipeline_status [URL]   (default http://127.0.0.1:$FEEDER_HEALTH_PORT/status)
Exit 0 with the table; 2 with one line when the feeder cannot be asked.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from webapp.status import FeederStatus, LayerStatus
from webapp.ui import SPARK_LAYERS, duration


def _ago(ms: int | None, now_ms: int) -> str:
    return "—" if ms is None else f"{duration(now_ms - ms)} ago"


def render(status: FeederStatus, now_ms: int | None = None) -> list[str]:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    lines = [f"feeder {status.instance}: {status.state}, Kafka {'up' if status.kafka_ok else 'not confirmed'}, "
             f"Redis {'up' if status.redis_ok else 'down' if status.redis_ok is False else 'unknown'}, "
             f"reported {status.age_s(now_ms / 1000):.0f} s ago"]
    lines.append(f"  {'topic':36} {'lag':>7} {'records':>9}  newest record")
    for name, t in sorted(status.topics.items()):
        lines.append(f"  {name:36} {'—' if t.lag is None else t.lag:>7} {t.records:>9}  {_ago(t.last_event_ms, now_ms)}")
    lines.append(f"  dead letters: {'—' if status.dead_letters is None else status.dead_letters}")
    lines.append(f"  {'spark query':22} {'batch':>6} {'rows':>6}  {'committed':16} freshness (commit - newest event)")
    by_layer: dict[str, list[LayerStatus]] = {}
    for q in status.layers.values():
        by_layer.setdefault(q.job, []).append(q)
    for layer in SPARK_LAYERS:
        queries = sorted(by_layer.get(layer, []), key=lambda q: q.query)
        if not queries:
            lines.append(f"  {layer:22} nothing published yet (is the {layer} job running?)")
        for q in queries:
            lines.append(f"  {q.query:22} {q.batch_id:>6} {q.rows:>6}  {_ago(q.committed_ms, now_ms):16} "
                         f"{duration(q.lag_ms)}")
    report = status.consistency
    lines.append(f"  consistency: {'no report yet' if report is None else report.summary(now_ms)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    url = args[0] if args else f"http://127.0.0.1:{os.environ.get('FEEDER_HEALTH_PORT', '8081')}/status"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - an http URL we were given
            body: dict[str, Any] = json.load(resp)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"pipeline_status: the feeder's status at {url} cannot be read: {exc}", file=sys.stderr)
        return 2
    body.pop("age_s", None)
    for layer in (body.get("layers") or {}).values():
        layer.pop("lag_ms", None)
    status = FeederStatus.from_json(json.dumps(body))
    if status is None:
        print(f"pipeline_status: {url} answered something that is not the feeder's status", file=sys.stderr)
        return 2
    print("\n".join(render(status)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
