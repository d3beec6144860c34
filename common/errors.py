"""How an error becomes the one line a person reads (a CLI's stderr, a page, a status field)."""

from __future__ import annotations


def one_line(exc: BaseException | str, limit: int = 300) -> str:
    """``exc``'s message on one line, at most ``limit`` characters; its type when it has no message."""
    return " ".join(str(exc).split())[:limit] or type(exc).__name__
