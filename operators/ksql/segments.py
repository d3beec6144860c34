"""Marketing segment rules: ``ksql/segments.yaml`` is the one place they live.

* :func:`load_rules` reads and validates the YAML.
* :func:`case_expression` renders the rules as the ksqlDB ``CASE`` expressions that
  ``ksql/060-segments.sql`` carries between its GENERATED markers: over the current rule inputs, and
  (a marker tagged ``[previous]``) over the previous ones, so that the query can emit a segment
  record only when the segment changes.
* :func:`segment_for` evaluates the same rules in Python (for the web UI, Spark jobs, tests).

CLI: ``python -m operators.ksql.segments [--check|--write] [ksql/]`` compares (exit 1 when stale)
or rewrites the generated block of every ``.sql`` file that has the markers.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

RULES_FILE = "segments.yaml"
BEGIN_MARKER = "-- BEGIN GENERATED segment rules"
END_MARKER = "-- END GENERATED segment rules"
_CONDITIONS = {"stage", "lifecycle_stage", "min_lifetime_value", "min_order_count", "max_order_count",
               "min_score", "max_score"}
# What a rule condition reads, per block tag: the current values, or the previous row's (the second
# newest of the last two values ``T_SEGMENT_INPUTS`` keeps; ksqlDB arrays are 1-based).
INPUTS: dict[str, dict[str, str]] = {
    "": {"lifecycle_stage": "`lifecycle_stage`", "lifetime_value": "`lifetime_value`",
         "order_count": "`order_count`", "behavioural_stage": "`behavioural_stage`", "score": "`score`"},
    "previous": {"lifecycle_stage": "`lifecycle_stage_history`[1]", "lifetime_value": "`lifetime_value_history`[1]",
                 "order_count": "`order_count_history`[1]", "behavioural_stage": "`behavioural_stage_history`[1]",
                 "score": "`score_history`[1]"},
}
_SEGMENT_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


class RulesError(ValueError):
    """segments.yaml is malformed."""


def known_stage(lifecycle_stage: str | None, behavioural_stage: str | None) -> str | None:
    """The stage the ``stage`` condition reads: the behavioural stage once the customer is scored (what
    the pipeline knows from the customer's orders and engagements), the declared one until then."""
    return behavioural_stage if behavioural_stage is not None else lifecycle_stage


@dataclass(frozen=True)
class Rule:
    segment: str
    stages: tuple[str, ...] = ()  # declared lifecycle stage; empty: any
    min_lifetime_value: float | None = None
    min_order_count: int | None = None
    max_order_count: int | None = None
    known_stages: tuple[str, ...] = ()  # :func:`known_stage`; empty: any
    min_score: float | None = None  # propensity score; an unscored customer matches no score condition
    max_score: float | None = None

    def matches(self, stage: str | None, lifetime_value: float, order_count: int,
                behavioural_stage: str | None = None, score: float | None = None) -> bool:
        if self.stages and stage not in self.stages:
            return False
        if self.known_stages and known_stage(stage, behavioural_stage) not in self.known_stages:
            return False
        if self.min_lifetime_value is not None and not lifetime_value >= self.min_lifetime_value:
            return False
        if self.min_order_count is not None and not order_count >= self.min_order_count:
            return False
        if self.max_order_count is not None and not order_count <= self.max_order_count:
            return False
        if self.min_score is not None and (score is None or not score >= self.min_score):
            return False
        return not (self.max_score is not None and (score is None or not score <= self.max_score))


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...]
    default: str

    @property
    def segments(self) -> tuple[str, ...]:
        names: list[str] = []
        for name in [r.segment for r in self.rules] + [self.default]:
            if name not in names:
                names.append(name)
        return tuple(names)


def parse_rules(doc: Any) -> Rules:
    if not isinstance(doc, Mapping) or doc.get("version") != 1:
        raise RulesError("segments.yaml must be a mapping with version: 1")
    default = doc.get("default")
    if not isinstance(default, str) or not _SEGMENT_NAME.match(default):
        raise RulesError("default must be a segment name (lower_snake_case)")
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, Sequence) or isinstance(raw_rules, str) or not raw_rules:
        raise RulesError("rules must be a non-empty list")
    rules: list[Rule] = []
    for n, raw in enumerate(raw_rules, 1):
        if not isinstance(raw, Mapping):
            raise RulesError(f"rule {n} must be a mapping")
        unknown = set(raw) - _CONDITIONS - {"segment"}
        if unknown:
            raise RulesError(f"rule {n}: unknown keys {sorted(unknown)}; allowed: segment, {sorted(_CONDITIONS)}")
        segment = raw.get("segment")
        if not isinstance(segment, str) or not _SEGMENT_NAME.match(segment):
            raise RulesError(f"rule {n}: segment must be a lower_snake_case name")
        stage_lists = {}
        for key in ("lifecycle_stage", "stage"):
            stages = raw.get(key, ())
            stages = (stages,) if isinstance(stages, str) else tuple(stages)
            if not all(isinstance(s, str) and s and "'" not in s for s in stages):
                raise RulesError(f"rule {n}: {key} must be a stage name or a list of them")
            stage_lists[key] = stages
        numbers = {}
        for key in ("min_lifetime_value", "min_score", "max_score"):
            value = raw.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
            ):
                raise RulesError(f"rule {n}: {key} must be a number")
            numbers[key] = None if value is None else float(value)
        min_value = numbers["min_lifetime_value"]
        counts = {}
        for key in ("min_order_count", "max_order_count"):
            value = raw.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise RulesError(f"rule {n}: {key} must be an integer >= 0")
            counts[key] = value
        if not any([*stage_lists.values(), *(v is not None for v in numbers.values()),
                    *(v is not None for v in counts.values())]):
            raise RulesError(f"rule {n}: has no condition (use `default` for the catch-all)")
        rules.append(Rule(segment, stage_lists["lifecycle_stage"], min_value, counts["min_order_count"],
                          counts["max_order_count"], stage_lists["stage"], numbers["min_score"], numbers["max_score"]))
    return Rules(tuple(rules), default)


def load_rules(path: str | Path) -> Rules:
    path = Path(path)
    if path.is_dir():
        path = path / RULES_FILE
    return parse_rules(yaml.safe_load(path.read_text()))


def segment_for(rules: Rules, lifecycle_stage: str | None, lifetime_value: float | None,
                order_count: int | None, behavioural_stage: str | None = None, score: float | None = None) -> str:
    """The segment a customer falls in (missing metrics count as 0, as in the consolidated view;
    ``behavioural_stage`` and ``score`` are None until the customer is scored)."""
    value = 0.0 if lifetime_value is None else float(lifetime_value)
    count = 0 if order_count is None else int(order_count)
    for rule in rules.rules:
        if rule.matches(lifecycle_stage, value, count, behavioural_stage, score):
            return rule.segment
    return rules.default


# ---- ksqlDB rendering ----------------------------------------------------------------------------


def _number(value: float) -> str:
    text = repr(float(value))
    return text if "e" not in text else f"{value:.6f}"


def case_expression(rules: Rules, indent: str = "", inputs: str = "") -> str:
    """The rules as a ksqlDB CASE expression over the rule inputs (``inputs=""``) or over their
    previous values (``inputs="previous"``, see :data:`INPUTS`). A comparison with NULL is not true in
    ksqlDB, as an unscored customer's score condition is not in :meth:`Rule.matches`."""
    col = INPUTS[inputs]
    known = f"COALESCE({col['behavioural_stage']}, {col['lifecycle_stage']})"  # :func:`known_stage`

    def one_of(expr: str, stages: tuple[str, ...]) -> str:
        if len(stages) == 1:
            return f"{expr} = '{stages[0]}'"
        return f"{expr} IN (" + ", ".join(f"'{s}'" for s in stages) + ")"

    lines = [f"{indent}CASE"]
    for rule in rules.rules:
        conds: list[str] = []
        if rule.stages:
            conds.append(one_of(col["lifecycle_stage"], rule.stages))
        if rule.known_stages:
            conds.append(one_of(known, rule.known_stages))
        if rule.min_score is not None:
            conds.append(f"{col['score']} >= {_number(rule.min_score)}")
        if rule.max_score is not None:
            conds.append(f"{col['score']} <= {_number(rule.max_score)}")
        if rule.min_lifetime_value is not None:
            conds.append(f"{col['lifetime_value']} >= {_number(rule.min_lifetime_value)}")
        if rule.min_order_count is not None:
            conds.append(f"{col['order_count']} >= {rule.min_order_count}")
        if rule.max_order_count is not None:
            conds.append(f"{col['order_count']} <= {rule.max_order_count}")
        lines.append(f"{indent}    WHEN {' AND '.join(conds)} THEN '{rule.segment}'")
    lines.append(f"{indent}    ELSE '{rules.default}'")
    lines.append(f"{indent}END")
    return "\n".join(lines)


_BLOCK = re.compile(
    r"(?P<head>^(?P<indent>[ \t]*)" + re.escape(BEGIN_MARKER) + r"(?:[ \t]+\[(?P<tag>[a-z]+)\])?[^\n]*\n)"
    r"(?P<body>.*?)(?P<tail>^[ \t]*" + re.escape(END_MARKER) + r")",
    re.MULTILINE | re.DOTALL,
)


def generated_blocks(sql: str) -> list[tuple[str, str]]:
    """``(tag, text between the markers)`` of every generated block of ``sql``, in order."""
    return [(m.group("tag") or "", m.group("body")) for m in _BLOCK.finditer(sql)]


def generated_block(sql: str) -> str | None:
    """The text between the first pair of markers of ``sql`` (None when it has no markers)."""
    blocks = generated_blocks(sql)
    return blocks[0][1] if blocks else None


def render(sql: str, rules: Rules) -> str:
    """``sql`` with every block between the markers replaced by the rendered rules."""
    if not _BLOCK.search(sql):
        raise RulesError(f"no '{BEGIN_MARKER}' ... '{END_MARKER}' block")

    def block(m: re.Match[str]) -> str:
        tag = m.group("tag") or ""
        if tag not in INPUTS:
            raise RulesError(f"unknown generated block tag [{tag}]; known: {sorted(t for t in INPUTS if t)}")
        return m.group("head") + case_expression(rules, m.group("indent"), tag) + "\n" + m.group("tail")

    return _BLOCK.sub(block, sql)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m operators.ksql.segments", description=__doc__.split("\n\n")[0])
    ap.add_argument("directory", nargs="?", default="ksql", help="directory with segments.yaml and *.sql")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if a generated block is stale (default)")
    mode.add_argument("--write", action="store_true", help="rewrite the generated blocks")
    args = ap.parse_args(argv)
    directory = Path(args.directory)
    try:
        rules = load_rules(directory)
    except (OSError, RulesError, yaml.YAMLError) as exc:
        print(f"segments: {exc}", file=sys.stderr)
        return 2
    stale = []
    for path in sorted(directory.glob("*.sql")):
        text = path.read_text()
        if generated_block(text) is None:
            continue
        new = render(text, rules)
        if new != text:
            stale.append(path)
            if args.write:
                path.write_text(new)
    for path in stale:
        print(f"{'rewrote' if args.write else 'stale'}: {path}")
    return 1 if stale and not args.write else 0


if __name__ == "__main__":
    raise SystemExit(main())
