"""Render the ``.sql`` files of a directory as the labelled ConfigMap the operator watches.

    python -m operators.ksql.configmap ksql/ [--name marketing-engine-ksql] [--namespace marketing-engine]
        [--label marketing-engine.io/ksql=true] [--deletion-policy keep|drop] | kubectl apply -f -

Keys are the file names (the operator applies them in key order); only ``*.sql`` files are included,
after checking that the operator would accept them. Exit status 2 when it would not.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

import yaml

from operators.ksql import plan, state, statements
from operators.ksql.settings import label_selector


def manifest(files: Mapping[str, str], *, name: str, namespace: str, label: str,
             deletion_policy: str = "keep") -> dict[str, Any]:
    key, sep, value = label.partition("=")
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {key: value if sep else "true", "app.kubernetes.io/part-of": "marketing-engine"},
    }
    if deletion_policy != "keep":
        meta["annotations"] = {state.DELETION_POLICY: deletion_policy}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
            "data": {k: files[k] for k in sorted(files) if k.endswith(statements.SQL_SUFFIX)}}


class _Literal(str):
    pass


def _literal(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")


def dump(doc: dict[str, Any]) -> str:
    """YAML with the SQL as readable block scalars."""

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(_Literal, _literal)
    doc = {**doc, "data": {k: _Literal(v) for k, v in doc["data"].items()}}
    return yaml.dump(doc, Dumper=Dumper, sort_keys=False, width=4096)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m operators.ksql.configmap", description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help=".sql files or directories")
    ap.add_argument("--name", default="marketing-engine-ksql")
    ap.add_argument("--namespace", default="marketing-engine")
    ap.add_argument("--label", default="marketing-engine.io/ksql=true", help="the operator's KSQL_CONFIGMAP_LABEL")
    ap.add_argument("--deletion-policy", choices=state.POLICIES, default="keep")
    args = ap.parse_args(argv)
    try:
        label_selector(args.label)
        files = plan.read_files(args.paths)
        statements.load(files)
    except (OSError, ValueError) as exc:
        print(f"configmap: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(dump(manifest(files, name=args.name, namespace=args.namespace, label=args.label,
                                   deletion_policy=args.deletion_policy)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
