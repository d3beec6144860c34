"""Reading the SELECT list of a ksql/ statement in tests (the product's tokenizer, no parser of its own)."""

from __future__ import annotations

from operators.ksql.statements import Token


def select_span(toks: list[Token]) -> tuple[int, int]:
    """(first token of the SELECT list, index of its top-level FROM) in a CREATE ... AS SELECT."""
    ups = [t.upper for t in toks]
    start = ups.index("SELECT") + 1
    depth, end = 0, start
    for end in range(start, len(toks)):
        if toks[end].value == "(":
            depth += 1
        elif toks[end].value == ")":
            depth -= 1
        elif depth == 0 and ups[end] == "FROM":
            break
    return start, end
