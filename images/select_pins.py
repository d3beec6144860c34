"""Print the pinned requirement lines of pyproject.toml for the named distributions (one per line).

Used by the Dockerfiles so that images install exactly the versions pyproject.toml pins, and nothing
the component does not need (the app image has no Spark, the Spark image no Flask):

    python images/select_pins.py pyproject.toml flask redis ... > requirements.txt

Fails (exit 2) when a name is not a dependency in pyproject.toml or is not pinned with ``==``.
Standard library only (tomllib: Python >= 3.11).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(pyproject: Path) -> dict[str, str]:
    """canonical distribution name -> requirement line, for every ``project.dependencies`` entry."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    out: dict[str, str] = {}
    for line in deps:
        match = _NAME.match(line)
        if match:
            out[canonical(match.group(1))] = line.strip()
    return out


def select(pyproject: Path, names: list[str]) -> list[str]:
    available = pins(pyproject)
    lines = []
    for name in names:
        line = available.get(canonical(name))
        if line is None:
            raise SystemExit(f"select_pins: {name} is not a dependency in {pyproject}")
        if "==" not in line:
            raise SystemExit(f"select_pins: {line!r} in {pyproject} is not pinned with ==")
        lines.append(line)
    return lines


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print("\n".join(select(Path(argv[0]), argv[1:])))
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
