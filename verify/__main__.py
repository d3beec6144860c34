"""python -m verify: publish a probe customer, follow it hop by hop, print PASS n/n (exit 0) or the hop
that failed and what it last saw (exit 1); a stack that cannot be reached at all is one line (exit 2)."""

from __future__ import annotations

import sys

from common.settings import ConfigError
from verify.follow import VerifyError, run
from verify.settings import VerifySettings


def main(argv: list[str] | None = None) -> int:
    try:
        settings = VerifySettings.from_env()
    except ConfigError as exc:
        print(f"verify: {exc}", file=sys.stderr)
        return 2
    try:
        report = run(settings, out=lambda line: print(line, flush=True))
    except VerifyError as exc:
        print(f"verify: {exc}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line, flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
