"""Split a ksqlDB script into statements, the way ksqlDB's own lexer would.

A ``;`` ends a statement only outside string literals (``'...'``, ``''`` escapes a quote), quoted
identifiers (`` `...` `` and ``"..."``, a doubled quote escapes it), line comments (``-- ...``) and
block comments (``/* ... */``, not nested: ksqlDB's lexer does not nest them either).

Each statement comes back twice: ``text`` is the original source (from its first to its last
significant character, so a trailing comment can never swallow the ``;`` we append when sending it)
and ``normalized`` has comments removed and whitespace outside quotes collapsed to one space. The
operator hashes ``normalized``, so re-indenting a file or editing a comment does not re-apply it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


class SplitError(ValueError):
    """The script cannot be split (an unterminated string, quoted identifier or block comment)."""

    def __init__(self, message: str, line: int):
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.reason = message


@dataclass(frozen=True)
class Piece:
    text: str  # original text of the statement, without the terminating ';'
    normalized: str  # comments removed, whitespace collapsed outside quotes, no terminating ';'
    line: int  # 1-based line of the statement's first significant character
    number: int  # 1-based position among the non-empty statements of the script

    @property
    def digest(self) -> str:
        return statement_digest(self.normalized)


def statement_digest(normalized: str) -> str:
    """SHA-256 (hex) of a normalized statement: what the operator stores per statement."""
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


_QUOTES = {"'": "string literal", "`": "quoted identifier", '"': "quoted identifier"}


def split(script: str) -> list[Piece]:
    """The non-empty statements of ``script`` in order. Raises :class:`SplitError`."""
    pieces: list[Piece] = []
    norm: list[str] = []  # normalized characters of the current statement
    pending_space = False  # whitespace or a comment seen since the last significant character
    start = -1  # index of the current statement's first significant character
    end = -1  # index just past its last significant character
    start_line = 0
    line = 1
    i = 0
    n = len(script)

    def significant(ch_start: int, chunk: str) -> None:
        nonlocal pending_space, start, end, start_line
        if start < 0:
            start, start_line = ch_start, line
        elif pending_space:
            norm.append(" ")
        pending_space = False
        norm.append(chunk)

    def finish() -> None:
        nonlocal norm, pending_space, start, end
        if start >= 0:
            pieces.append(Piece(script[start:end], "".join(norm), start_line, len(pieces) + 1))
        norm, pending_space, start, end = [], False, -1, -1

    while i < n:
        ch = script[i]
        if ch in _QUOTES:
            first_line = line
            j = i + 1
            while True:
                if j >= n:
                    raise SplitError(f"unterminated {_QUOTES[ch]} starting here", first_line)
                if script[j] == ch:
                    if j + 1 < n and script[j + 1] == ch:  # doubled quote: an escaped quote character
                        j += 2
                        continue
                    break
                if script[j] == "\n":
                    line += 1
                j += 1
            # The line counter already moved past any newlines inside the literal; the statement
            # start line must be the line the literal began on.
            saved = line
            line = first_line
            significant(i, script[i : j + 1])
            line = saved
            i = j + 1
            end = i
        elif ch == "-" and script.startswith("--", i):
            j = script.find("\n", i)
            i = n if j < 0 else j  # the newline itself is handled as whitespace
            pending_space = True
        elif ch == "/" and script.startswith("/*", i):
            j = script.find("*/", i + 2)
            if j < 0:
                raise SplitError("unterminated block comment starting here", line)
            line += script.count("\n", i, j)
            i = j + 2
            pending_space = True
        elif ch == ";":
            finish()
            i += 1
        elif ch.isspace():
            if ch == "\n":
                line += 1
            pending_space = True
            i += 1
        else:
            significant(i, ch)
            i += 1
            end = i
    finish()
    return pieces


def normalize(statement: str) -> str:
    """The normalized form of one statement (comments and layout removed)."""
    pieces = split(statement)
    if len(pieces) != 1:
        raise ValueError(f"expected exactly one statement, found {len(pieces)}")
    return pieces[0].normalized
