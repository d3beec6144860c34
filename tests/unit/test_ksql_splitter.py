"""The statement splitter: a ';' inside a string literal, a quoted identifier or a comment does not
split; normalization ignores layout and comments. Example-based tests plus hypothesis properties."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from operators.ksql import splitter
from operators.ksql.splitter import SplitError, split


def norms(script: str) -> list[str]:
    return [p.normalized for p in split(script)]


@pytest.mark.parametrize(
    "script,expected",
    [
        ("SELECT 1; SELECT 2;", ["SELECT 1", "SELECT 2"]),
        ("SELECT 'a;b' FROM t;", ["SELECT 'a;b' FROM t"]),
        ("SELECT 'it''s; fine' FROM t; X;", ["SELECT 'it''s; fine' FROM t", "X"]),
        ("SELECT `we;ird` FROM t;", ["SELECT `we;ird` FROM t"]),
        ("SELECT `a``;b` FROM t;", ["SELECT `a``;b` FROM t"]),
        ('SELECT "x;y" FROM t;', ['SELECT "x;y" FROM t']),
        ("SELECT 1 -- no split; here\n FROM t;", ["SELECT 1 FROM t"]),
        ("SELECT 1 /* ; not here ; */ FROM t;", ["SELECT 1 FROM t"]),
        ("SELECT 1/**/FROM t;", ["SELECT 1 FROM t"]),
        ("SELECT '--not a comment' FROM t;", ["SELECT '--not a comment' FROM t"]),
        ("SELECT '/*not a comment*/' FROM t;", ["SELECT '/*not a comment*/' FROM t"]),
        ("SELECT a - b, c / d FROM t;", ["SELECT a - b, c / d FROM t"]),
        (";;  ; -- only comments ;\n /* ; */ ;", []),
        ("SELECT 1", ["SELECT 1"]),  # the last statement may omit its ';'
        ("  SELECT\n\t1   ,\n 2 ;", ["SELECT 1 , 2"]),
        ("SELECT 'a\n  b';", ["SELECT 'a\n  b'"]),  # whitespace inside literals is kept
    ],
)
def test_split_examples(script, expected):
    assert norms(script) == expected


def test_text_is_the_source_from_first_to_last_significant_character():
    script = "-- header ; comment\nCREATE STREAM s (a INT) -- trailing; comment\n;\n  /* c */ SET 'x' = 'y';"
    pieces = split(script)
    assert [p.text for p in pieces] == ["CREATE STREAM s (a INT)", "SET 'x' = 'y'"]
    # the trailing comment is not part of the text, so appending ';' can never be swallowed by it
    assert all(not p.text.endswith("comment") for p in pieces)


def test_line_numbers_and_statement_numbers():
    script = "\n\n-- c\nA\n;\n\nB 'x\ny'\n;C;"
    pieces = split(script)
    assert [(p.number, p.line) for p in pieces] == [(1, 4), (2, 7), (3, 9)]


@pytest.mark.parametrize(
    "script,line,what",
    [
        ("SELECT 'abc FROM t;", 1, "string literal"),
        ("A;\nSELECT `abc FROM t;", 2, "quoted identifier"),
        ('A;\n\nSELECT "abc', 3, "quoted identifier"),
        ("A;\n/* never closed ;\n", 2, "block comment"),
    ],
)
def test_unterminated_constructs_are_errors_with_a_line(script, line, what):
    with pytest.raises(SplitError) as err:
        split(script)
    assert err.value.line == line
    assert what in str(err.value)


def test_normalize_single_statement_and_digest_ignores_layout():
    a = splitter.normalize("CREATE  STREAM s\n  (a INT)   -- x\n;")
    b = splitter.normalize("/* doc */ CREATE STREAM s (a INT);")
    assert a == b == "CREATE STREAM s (a INT)"
    assert splitter.statement_digest(a) == splitter.statement_digest(b)
    assert splitter.statement_digest(a) != splitter.statement_digest("CREATE STREAM s (a BIGINT)")
    with pytest.raises(ValueError):
        splitter.normalize("A; B;")


# ---- properties ------------------------------------------------------------------------------------

# Pieces of text that may contain every troublesome character.
NASTY = st.text(alphabet=st.sampled_from(list("ab ;'`\"-/*\n\t")), max_size=12)

word = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
string_literal = NASTY.map(lambda s: "'" + s.replace("'", "''") + "'")
backquoted = NASTY.filter(bool).map(lambda s: "`" + s.replace("`", "``") + "`")
dquoted = NASTY.filter(bool).map(lambda s: '"' + s.replace('"', '""') + '"')
symbol = st.sampled_from(["(", ")", ",", "=", "*", "<", ">", "+", "."])
token = st.one_of(word, string_literal, backquoted, dquoted, symbol)

line_comment = NASTY.map(lambda s: "--" + s.replace("\n", " ") + "\n")
block_comment = NASTY.map(lambda s: "/*" + s.replace("*/", "* /") + "*/")
gap = st.one_of(st.sampled_from([" ", "\n", "\t ", "  \n  "]), line_comment, block_comment)

statement = st.lists(token, min_size=1, max_size=8)


def render(statements: list[list[str]], gaps: list[str], final_semicolon: bool) -> str:
    out: list[str] = []
    g = iter(gaps * 50)
    for n, tokens in enumerate(statements):
        out.append(next(g))
        for tok in tokens:
            out.append(tok)
            out.append(next(g))
        if n < len(statements) - 1 or final_semicolon:
            out.append(";")
    out.append(next(g))
    return "".join(out)


@given(st.lists(statement, min_size=1, max_size=5), st.lists(gap, min_size=1, max_size=6), st.booleans())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@example([["SELECT", "';'", "FROM", "`a;b`"]], ["--;\n"], True)
def test_splitting_recovers_the_statements(stmts, gaps, final_semicolon):
    """Whatever ';', quotes and comments the literals and gaps contain, the script splits back into
    exactly the generated statements, each normalized to its tokens joined by single spaces."""
    script = render(stmts, gaps, final_semicolon)
    assert norms(script) == [" ".join(tokens) for tokens in stmts]


@given(st.lists(statement, min_size=1, max_size=4), st.lists(gap, min_size=1, max_size=4),
       st.lists(gap, min_size=1, max_size=4))
@settings(max_examples=200)
def test_layout_and_comments_never_change_the_digest(stmts, gaps_a, gaps_b):
    a = split(render(stmts, gaps_a, True))
    b = split(render(stmts, gaps_b, False))
    assert [p.digest for p in a] == [p.digest for p in b]


@given(st.lists(statement, min_size=1, max_size=4), st.lists(gap, min_size=1, max_size=4))
@settings(max_examples=200)
def test_each_piece_text_splits_to_itself(stmts, gaps):
    for piece in split(render(stmts, gaps, True)):
        again = split(piece.text + ";")
        assert len(again) == 1 and again[0].normalized == piece.normalized


@given(st.text(max_size=200))
@settings(max_examples=500)
def test_any_text_splits_or_raises_split_error(text):
    try:
        pieces = split(text)
    except SplitError as exc:
        assert exc.line >= 1
        return
    for piece in pieces:
        assert piece.normalized and piece.normalized == piece.normalized.strip()
        assert piece.text.strip() == piece.text
