"""Dry run: print what the operator would send to ksqlDB for some ``.sql`` files, in order.

    python -m operators.ksql.plan ksql/                       # against an empty server
    python -m operators.ksql.plan --server http://localhost:8088 ksql/   # against a live one
    python -m operators.ksql.plan --state "$(kubectl get cm marketing-engine-ksql \\
        -o jsonpath='{.metadata.annotations.ksql\\.marketing-engine\\.io/state}')" --server ... ksql/

Nothing is ever applied: with ``--server`` the plan only lists the server's streams, tables and
queries (``SHOW ...``). ``--state`` takes the operator's state annotation of the ConfigMap, so the
plan shows exactly the changes the operator would make for the new files. Exit status: 0, or 2 when
the files are invalid or the server cannot be listed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from operators.ksql import planner, state, statements
from operators.ksql.client import Catalog, KsqlClient, KsqlError


def read_files(paths: list[str]) -> dict[str, str]:
    """``name -> text`` for the given .sql files and every .sql file of the given directories."""
    files: dict[str, str] = {}
    for raw in paths:
        path = Path(raw)
        candidates = sorted(path.glob("*" + statements.SQL_SUFFIX)) if path.is_dir() else [path]
        for p in candidates:
            if p.name in files:
                raise ValueError(f"two files named {p.name}: ConfigMap keys must be unique")
            files[p.name] = p.read_text()
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m operators.ksql.plan",
                                 description="Print the statements the KSQL operator would apply, in order.")
    ap.add_argument("paths", nargs="+", help=".sql files or directories (ordered by file name, like ConfigMap keys)")
    ap.add_argument("--dry-run", action="store_true", help="accepted for clarity: the plan never applies anything")
    ap.add_argument("--server", metavar="URL", help="plan against this ksqlDB server (read-only SHOW requests)")
    ap.add_argument("--state", metavar="JSON", help=f"the ConfigMap's {state.STATE} annotation")
    ap.add_argument("--policy", choices=state.POLICIES, default="keep",
                    help="deletion policy for statements no longer declared (default keep)")
    ap.add_argument("--no-sql", action="store_true", help="list the steps without the statement text")
    args = ap.parse_args(argv)

    try:
        topology = statements.load(read_files(args.paths))
    except (OSError, ValueError) as exc:
        print(f"plan: {exc}", file=sys.stderr)
        return 2
    records, _ = state.decode({state.STATE: args.state} if args.state else {})
    live = Catalog()
    if args.server:
        try:
            live = KsqlClient(args.server, timeout=15.0).catalog()
        except KsqlError as exc:
            print(f"plan: {exc}", file=sys.stderr)
            return 2
    try:
        result = planner.plan(topology, records, live, drop_removed=args.policy == "drop")
    except planner.PlanError as exc:
        print(f"plan: {exc}", file=sys.stderr)
        return 2
    where = f"server {args.server}" if args.server else "an empty server"
    print(f"-- {len(topology.sources)} statement(s) in {len(topology.files)} file(s), "
          f"content {topology.content_hash[:12]}, planned against {where}")
    print(planner.describe(result, with_sql=not args.no_sql))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
