"""python -m consistency: compare ksqlDB's view with gold once, publish the report, print its line.

Exit 0 once the report is published, whatever it says (a CronJob retrying would change nothing);
2 with one line when a setting is wrong or Kafka / the registry cannot be reached."""

from __future__ import annotations

import sys
import time

from common.settings import ConfigError
from consistency import read
from consistency.compare import compare
from consistency.settings import ConsistencySettings


def main(argv: list[str] | None = None) -> int:
    try:
        settings = ConsistencySettings.from_env()
    except ConfigError as exc:
        print(f"consistency: {exc}", file=sys.stderr)
        return 2
    try:
        report = run(settings)
    except read.Unreachable as exc:
        print(f"consistency: {exc}", file=sys.stderr)
        return 2
    print(report.line(), flush=True)
    return 0


def run(settings: ConsistencySettings, now_ms: int | None = None):  # noqa: ANN201 - compare.Report
    """One comparison: both sides read to their current ends, the report published."""
    gold, horizon = read.gold_and_horizon(settings)  # gold first: the view is then at least as new
    view = read.view(settings)
    # Erasures last: every erasure either side already reflects is then known.
    erased = read.erased(settings)
    report = compare(view, gold, now_ms=int(time.time() * 1000) if now_ms is None else now_ms,
                     gold_horizon_ms=horizon, settle_ms=int(settings.settle_s * 1000), examples=settings.examples,
                     erased=erased)
    read.publish(settings, report.record())
    return report


if __name__ == "__main__":
    sys.exit(main())
