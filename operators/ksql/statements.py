"""Parse the statements of KSQL ConfigMaps into the objects they declare.

The operator only needs the shape of a statement, not a full grammar: which stream or table it
creates, from which sources it reads, which topic it writes, whether its query joins, aggregates or
windows (ksqlDB cannot upgrade those in place), and the ``SET``/``UNSET`` properties in force.

Managed files may contain only statements that are safe to apply again and again: ``SET``, ``UNSET``
and ``CREATE [OR REPLACE] [SOURCE] STREAM|TABLE`` (with or without ``AS SELECT``). ``INSERT INTO``,
``DROP``, ``TERMINATE``, ``CREATE CONNECTOR|TYPE``, ``DEFINE``, ``RUN SCRIPT`` and queries are
refused: each would either duplicate work on every apply or destroy something.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from operators.ksql import splitter

SQL_SUFFIX = ".sql"


class StatementError(ValueError):
    """A statement the operator cannot manage; names the file, statement number and line."""

    def __init__(self, file: str, number: int, line: int, reason: str):
        super().__init__(f"{file} statement {number} (line {line}): {reason}")
        self.file = file
        self.number = number
        self.line = line
        self.reason = reason


# ---- tokens ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # "word" | "qid" (quoted identifier) | "str" (string literal) | "sym"
    value: str  # word as written, identifier / literal unescaped, symbol

    @property
    def upper(self) -> str:
        return self.value.upper() if self.kind == "word" else ""


_WORD = re.compile(r"[A-Za-z_0-9$.@]+")
_SYMS = ("=>", "->", "<=", ">=", "<>", "!=", ":=", "::")


def tokenize(text: str) -> list[Token]:
    """Tokens of one statement, comments and whitespace skipped. The text must be splittable."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif ch in "'`\"":
            j = i + 1
            out: list[str] = []
            while j < n:
                if text[j] == ch:
                    if j + 1 < n and text[j + 1] == ch:
                        out.append(ch)
                        j += 2
                        continue
                    break
                out.append(text[j])
                j += 1
            tokens.append(Token("str" if ch == "'" else "qid", "".join(out)))
            i = j + 1
        else:
            m = _WORD.match(text, i)
            if m:
                tokens.append(Token("word", m.group()))
                i = m.end()
            else:
                sym = next((s for s in _SYMS if text.startswith(s, i)), ch)
                tokens.append(Token("sym", sym))
                i += len(sym)
    return tokens


def canonical_name(token: Token) -> str:
    """ksqlDB's name of an identifier: unquoted ones are upper-cased, quoted ones kept."""
    return token.value if token.kind == "qid" else token.value.upper()


_PLAIN_NAME = re.compile(r"[A-Z_][A-Z0-9_]*\Z")
_RESERVED = frozenset({"SELECT", "FROM", "TABLE", "STREAM", "TOPIC", "AS", "BY", "KEY", "WINDOW"})


def quote_name(name: str) -> str:
    """How to write a canonical name back into a statement."""
    if _PLAIN_NAME.match(name) and name not in _RESERVED:
        return name
    return "`" + name.replace("`", "``") + "`"


def render_type(tokens: Iterable[Token]) -> str:
    """A column type in one canonical spelling: ``ARRAY<STRUCT<`sku` STRING, `qty` INT>>``."""
    out: list[str] = []
    prev_wordish = False
    for tok in tokens:
        if tok.kind == "word":
            piece, wordish = tok.value.upper(), True
        elif tok.kind == "qid":
            piece, wordish = "`" + tok.value.replace("`", "``") + "`", True
        elif tok.kind == "str":
            piece, wordish = "'" + tok.value.replace("'", "''") + "'", True
        else:
            piece, wordish = (", " if tok.value == "," else tok.value), False
        if wordish and prev_wordish:
            out.append(" ")
        out.append(piece)
        prev_wordish = wordish
    return "".join(out)


# ---- statements ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str  # canonical
    type: str  # render_type() spelling
    key: bool = False  # KEY / PRIMARY KEY
    headers: bool = False


@dataclass(frozen=True)
class Source:
    """One ``CREATE STREAM|TABLE`` statement: the object it declares and how to (re)create it."""

    name: str  # canonical ksqlDB name
    kind: str  # STREAM | TABLE
    file: str
    number: int  # statement number within the file (1-based, SET/UNSET included)
    line: int
    text: str  # the statement as written (no terminating ';')
    normalized: str
    properties: Mapping[str, str]  # SET properties in force (file scope) -> streamsProperties
    or_replace: bool = False
    if_not_exists: bool = False
    is_source: bool = False  # CREATE SOURCE STREAM|TABLE (read-only, cannot be replaced)
    columns: tuple[Column, ...] = ()
    with_props: Mapping[str, str] = field(default_factory=dict)  # upper-cased keys
    query: bool = False  # AS SELECT
    reads: tuple[str, ...] = ()  # sources named in FROM / JOIN
    joins: bool = False
    groups: bool = False
    windowed: bool = False
    partitions_by: bool = False

    @property
    def digest(self) -> str:
        return splitter.statement_digest(self.normalized)

    @property
    def ref(self) -> str:
        return f"{self.file}#{self.number}"

    @property
    def topic(self) -> str:
        """The Kafka topic the object reads (plain CREATE) or writes (AS SELECT)."""
        return self.with_props.get("KAFKA_TOPIC") or self.name

    @property
    def value_format(self) -> str:
        return (self.with_props.get("VALUE_FORMAT") or self.with_props.get("FORMAT") or "").upper()

    @property
    def value_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if not c.key and not c.headers)

    @property
    def upgradable_in_place(self) -> bool:
        """Whether ``CREATE OR REPLACE`` can change it (ksqlDB: no SOURCE objects, no joins, no windowed
        queries, no aggregations; plain streams/tables only by appending columns)."""
        return not self.is_source and not (self.joins or self.groups or self.windowed)

    def create_sql(self) -> str:
        """The statement as written, terminated."""
        return self.text + ";"

    def replace_sql(self) -> str:
        """The statement as an in-place upgrade: ``CREATE OR REPLACE`` instead of ``IF NOT EXISTS``."""
        if self.or_replace:
            return self.create_sql()
        # Rebuild only the head: CREATE [SOURCE] STREAM|TABLE [IF NOT EXISTS] <name>; the rest verbatim.
        head = _HEAD.match(self.text)
        if head is None:  # pragma: no cover - parse() refuses statements whose head does not match
            raise ValueError(f"cannot rewrite {self.ref} as CREATE OR REPLACE")
        return f"CREATE OR REPLACE {self.kind} " + self.text[head.end() :].lstrip() + ";"

    @property
    def probe_name(self) -> str:
        """A name no declared object has, for proving the statement without touching the real one."""
        return f"{self.name}_EXPLAIN_{self.digest[:8].upper()}"

    def probe_sql(self) -> str:
        """The statement as a plain ``CREATE <kind> <probe_name> ...`` (rest verbatim), for ``EXPLAIN``.

        ksqlDB's EXPLAIN executes the statement in a sandbox copy of the engine (ExplainExecutor in
        confluentinc/ksql: ``executionContext.createSandbox(...).execute(...)``, refusing what runs no
        query). Under the object's own name the sandbox would answer for the name, not the statement:
        plain CREATE -> "already exists"; IF NOT EXISTS -> no query runs, refused; OR REPLACE -> the
        upgrade rules, which refuse every aggregation or join even when the statement is fine. So the
        probe creates a fresh name; KAFKA_TOPIC, if given, stays, and the sandbox's Kafka client only
        pretends to create topics."""
        head = _HEAD.match(self.text)
        name = _NAME.match(self.text, head.end()) if head else None
        if name is None:  # pragma: no cover - parse() refuses statements whose head does not match
            raise ValueError(f"cannot rewrite {self.ref} under a probe name")
        return f"CREATE {self.kind} {quote_name(self.probe_name)}" + self.text[name.end():] + ";"


# CREATE [OR REPLACE] [SOURCE] STREAM|TABLE [IF NOT EXISTS]: parse() refuses comments between these
# words, so replace_sql() can rewrite the head textually and keep the rest of the statement verbatim.
_HEAD = re.compile(
    r"\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:SOURCE\s+)?(?:STREAM|TABLE)\s+(?:IF\s+NOT\s+EXISTS\s+)?",
    re.IGNORECASE,
)


_NAME = re.compile(r"`(?:[^`]|``)*`|\"(?:[^\"]|\"\")*\"|[A-Za-z_0-9$.@]+")


@dataclass(frozen=True)
class SetProperty:
    key: str
    value: str | None  # None for UNSET


def parse(piece: splitter.Piece, *, file: str, properties: Mapping[str, str]) -> Source | SetProperty:
    """Classify one statement; raise StatementError for anything the operator does not manage."""

    def fail(reason: str) -> StatementError:
        return StatementError(file, piece.number, piece.line, reason)

    tokens = tokenize(piece.text)
    words = [t.upper for t in tokens]
    if not tokens:
        raise fail("empty statement")
    head = words[0]
    if head == "SET":
        if len(tokens) == 4 and tokens[1].kind == "str" and tokens[2].value == "=" and tokens[3].kind == "str":
            return SetProperty(tokens[1].value, tokens[3].value)
        raise fail("SET must look like SET 'property' = 'value'")
    if head == "UNSET":
        if len(tokens) == 2 and tokens[1].kind == "str":
            return SetProperty(tokens[1].value, None)
        raise fail("UNSET must look like UNSET 'property'")
    if head != "CREATE":
        kind = " ".join(w for w in words[:2] if w) or tokens[0].value
        raise fail(
            f"{kind} is not supported in a managed KSQL ConfigMap: only CREATE STREAM/TABLE, SET and UNSET "
            "are (anything else would run again on every apply, or destroy something)"
        )

    i = 1
    or_replace = is_source = if_not_exists = False
    if words[i : i + 2] == ["OR", "REPLACE"]:
        or_replace, i = True, i + 2
    if i < len(words) and words[i] == "SOURCE":
        is_source, i = True, i + 1
    if i >= len(words) or words[i] not in {"STREAM", "TABLE"}:
        what = " ".join(w for w in words[1:3] if w) or "?"
        raise fail(f"CREATE {what} is not supported: only CREATE [OR REPLACE] [SOURCE] STREAM|TABLE")
    kind = words[i]
    i += 1
    if words[i : i + 3] == ["IF", "NOT", "EXISTS"]:
        if_not_exists, i = True, i + 3
    if or_replace and if_not_exists:
        raise fail("OR REPLACE and IF NOT EXISTS cannot be combined")
    if or_replace and is_source:
        raise fail("CREATE OR REPLACE is not allowed for SOURCE streams/tables")
    if i >= len(tokens) or tokens[i].kind not in {"word", "qid"}:
        raise fail(f"CREATE {kind} without a name")
    name = canonical_name(tokens[i])
    name_at = i
    i += 1

    columns: tuple[Column, ...] = ()
    if i < len(tokens) and tokens[i].value == "(":
        close = _matching(tokens, i)
        if close < 0:
            raise fail("unbalanced parentheses in the column list")
        columns = _columns(tokens[i + 1 : close], fail)
        i = close + 1

    with_props: dict[str, str] = {}
    if i < len(words) and words[i] == "WITH":
        if i + 1 >= len(tokens) or tokens[i + 1].value != "(":
            raise fail("WITH must be followed by (...)")
        close = _matching(tokens, i + 1)
        if close < 0:
            raise fail("unbalanced parentheses in WITH (...)")
        with_props = _with_props(tokens[i + 2 : close], fail)
        i = close + 1

    query = False
    reads: list[str] = []
    joins = groups = windowed = partitions_by = False
    if i < len(words) and words[i] == "AS":
        if i + 1 >= len(words) or words[i + 1] != "SELECT":
            raise fail("AS must be followed by SELECT")
        query = True
        body = tokens[i + 1 :]
        bwords = words[i + 1 :]
        for k, w in enumerate(bwords):
            if w in {"FROM", "JOIN"} and k + 1 < len(body) and body[k + 1].kind in {"word", "qid"}:
                src = canonical_name(body[k + 1])
                if src not in reads:
                    reads.append(src)
            if w == "JOIN":
                joins = True
            elif w == "WINDOW":
                windowed = True
            elif w == "GROUP" and k + 1 < len(bwords) and bwords[k + 1] == "BY":
                groups = True
            elif w == "PARTITION" and k + 1 < len(bwords) and bwords[k + 1] == "BY":
                partitions_by = True
        if not reads:
            raise fail("AS SELECT without FROM")
        if columns:
            raise fail("a CREATE ... AS SELECT cannot also declare columns")
    elif i < len(tokens):
        raise fail(f"unexpected {tokens[i].value!r} after the {'WITH clause' if with_props else 'name'}")
    else:
        if not with_props.get("KAFKA_TOPIC"):
            raise fail(f"CREATE {kind} without AS SELECT needs WITH (KAFKA_TOPIC='...')")
    if query and is_source:
        raise fail("CREATE SOURCE ... AS SELECT is not valid ksqlDB")
    head_match = _HEAD.match(piece.text)
    if head_match is None or [t.upper for t in tokenize(head_match.group())] != words[: name_at]:
        raise fail("put no comments between CREATE and the object name")

    return Source(
        name=name, kind=kind, file=file, number=piece.number, line=piece.line, text=piece.text,
        normalized=piece.normalized, properties=dict(properties), or_replace=or_replace,
        if_not_exists=if_not_exists, is_source=is_source, columns=columns, with_props=with_props,
        query=query, reads=tuple(reads), joins=joins, groups=groups, windowed=windowed,
        partitions_by=partitions_by,
    )


def _matching(tokens: list[Token], open_at: int) -> int:
    depth = 0
    for k in range(open_at, len(tokens)):
        if tokens[k].kind != "sym":
            continue
        if tokens[k].value == "(":
            depth += 1
        elif tokens[k].value == ")":
            depth -= 1
            if depth == 0:
                return k
    return -1


def _split_top(tokens: list[Token]) -> list[list[Token]]:
    """Split at commas outside (), <> nesting."""
    parts: list[list[Token]] = [[]]
    depth = 0
    for tok in tokens:
        if tok.kind == "sym" and tok.value in {"(", "<"}:
            depth += 1
        elif tok.kind == "sym" and tok.value in {")", ">"}:
            depth -= 1
        if tok.kind == "sym" and tok.value == "," and depth == 0:
            parts.append([])
        else:
            parts[-1].append(tok)
    return [p for p in parts if p]


def _columns(tokens: list[Token], fail) -> tuple[Column, ...]:  # type: ignore[no-untyped-def]
    columns: list[Column] = []
    for part in _split_top(tokens):
        if part[0].kind not in {"word", "qid"} or len(part) < 2:
            raise fail(f"cannot read column definition {render_type(part)!r}")
        ups = [t.upper for t in part]
        key = headers = False
        if ups[-2:] == ["PRIMARY", "KEY"]:
            key, part = True, part[:-2]
        elif ups[-1] == "KEY":
            key, part = True, part[:-1]
        elif "HEADERS" in ups or "HEADER" in ups:
            headers = True
        columns.append(Column(canonical_name(part[0]), render_type(part[1:]), key, headers))
    names = [c.name for c in columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise fail(f"duplicate column names: {', '.join(dupes)}")
    return tuple(columns)


def _with_props(tokens: list[Token], fail) -> dict[str, str]:  # type: ignore[no-untyped-def]
    props: dict[str, str] = {}
    for part in _split_top(tokens):
        if len(part) != 3 or part[1].value != "=" or part[0].kind not in {"word", "qid"}:
            raise fail(f"cannot read WITH property {render_type(part)!r}")
        props[part[0].value.upper()] = part[2].value
    return props


# ---- whole ConfigMaps ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topology:
    """The sources declared by a set of files, in file order (files ordered by name)."""

    sources: tuple[Source, ...]
    files: tuple[str, ...]
    content_hash: str  # of the raw .sql contents (any byte change changes it)

    def by_name(self) -> dict[str, Source]:
        return {s.name: s for s in self.sources}


def content_hash(files: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for key in sorted(k for k in files if k.endswith(SQL_SUFFIX)):
        h.update(key.encode())
        h.update(b"\0")
        h.update(files[key].encode())
        h.update(b"\0")
    return h.hexdigest()


def load(files: Mapping[str, str]) -> Topology:
    """Parse every ``*.sql`` entry of ``files`` (ConfigMap data or a directory), ordered by key.

    ``SET``/``UNSET`` apply to the following statements of the same file only (ksqlDB's REST API
    scopes them to one request; the operator sends one statement per request and carries them in
    ``streamsProperties``). Raises StatementError on the first problem.
    """
    keys = sorted(k for k in files if k.endswith(SQL_SUFFIX))
    sources: list[Source] = []
    seen: dict[str, Source] = {}
    for key in keys:
        try:
            pieces = splitter.split(files[key])
        except splitter.SplitError as exc:
            raise StatementError(key, 0, exc.line, exc.reason) from None
        props: dict[str, str] = {}
        for piece in pieces:
            parsed = parse(piece, file=key, properties=props)
            if isinstance(parsed, SetProperty):
                if parsed.value is None:
                    props.pop(parsed.key, None)
                else:
                    props[parsed.key] = parsed.value
                continue
            if parsed.name in seen:
                other = seen[parsed.name]
                raise StatementError(key, piece.number, piece.line,
                                     f"{parsed.name} is already declared by {other.ref}")
            seen[parsed.name] = parsed
            sources.append(parsed)
    return Topology(tuple(sources), tuple(keys), content_hash(files))
