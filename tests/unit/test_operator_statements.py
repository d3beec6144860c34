"""Parsing managed KSQL files into the objects they declare."""

from __future__ import annotations

import pytest

from operators.ksql import statements
from operators.ksql.statements import StatementError, load, quote_name, tokenize


def one(sql: str, **files: str) -> statements.Source:
    topo = load({"a.sql": sql, **files})
    assert len(topo.sources) == 1
    return topo.sources[0]


def test_plain_stream_with_columns_and_properties():
    s = one("""CREATE STREAM IF NOT EXISTS src (
        `customer_id` STRING KEY, `items` ARRAY<STRUCT<`sku` STRING, qty INT>>, amount DECIMAL(10, 2)
    ) WITH (KAFKA_TOPIC='t.v1', KEY_FORMAT='KAFKA', value_format='AVRO');""")
    assert (s.name, s.kind, s.if_not_exists, s.or_replace, s.query) == ("SRC", "STREAM", True, False, False)
    assert [(c.name, c.type, c.key) for c in s.columns] == [
        ("customer_id", "STRING", True),
        ("items", "ARRAY<STRUCT<`sku` STRING, QTY INT>>", False),
        ("AMOUNT", "DECIMAL(10, 2)", False),
    ]
    assert s.topic == "t.v1" and s.value_format == "AVRO"
    assert [c.name for c in s.value_columns] == ["items", "AMOUNT"]
    assert s.upgradable_in_place


def test_query_shapes_and_references():
    s = one("""CREATE TABLE x WITH (KAFKA_TOPIC='out') AS SELECT a.k, COUNT(*) AS n
               FROM a_stream a LEFT JOIN `MixedCase` b ON a.k = b.k WINDOW TUMBLING (SIZE 1 MINUTE)
               GROUP BY a.k EMIT CHANGES;""")
    assert s.query and s.joins and s.windowed and s.groups
    assert s.reads == ("A_STREAM", "MixedCase")
    assert s.topic == "out"
    assert not s.upgradable_in_place


def test_keywords_inside_literals_and_quoted_identifiers_are_not_structure():
    s = one("CREATE STREAM y AS SELECT 'JOIN x FROM z GROUP BY w' AS `from` FROM src WHERE c = ' WINDOW ';")
    assert s.reads == ("SRC",) and not (s.joins or s.groups or s.windowed)


def test_default_topic_of_a_query_is_its_name():
    assert one("CREATE STREAM y AS SELECT * FROM src;").topic == "Y"


@pytest.mark.parametrize(
    "sql,reason",
    [
        ("INSERT INTO x SELECT * FROM y;", "INSERT INTO is not supported"),
        ("DROP STREAM x;", "DROP STREAM is not supported"),
        ("TERMINATE ALL;", "TERMINATE ALL is not supported"),
        ("SELECT * FROM x EMIT CHANGES;", "SELECT"),
        ("CREATE TYPE t AS STRUCT<a INT>;", "CREATE TYPE"),
        ("CREATE SINK CONNECTOR c WITH ('a'='b');", "CREATE SINK"),
        ("CREATE OR REPLACE STREAM IF NOT EXISTS x AS SELECT * FROM y;", "cannot be combined"),
        ("CREATE OR REPLACE SOURCE TABLE t (k INT PRIMARY KEY) WITH (KAFKA_TOPIC='t');", "not allowed for SOURCE"),
        ("CREATE STREAM x (a INT);", "needs WITH (KAFKA_TOPIC"),
        ("CREATE STREAM x (a INT, A INT) WITH (KAFKA_TOPIC='t');", "duplicate column"),
        ("CREATE STREAM x WITH (KAFKA_TOPIC='t') AS SELECT 1;", "without FROM"),
        ("CREATE STREAM IF /* c */ NOT EXISTS x AS SELECT * FROM y;", "no comments between"),
        ("CREATE /* c */ TABLE x AS SELECT * FROM y;", "no comments between"),
        ("SET 'a' 'b';", "SET must look like"),
    ],
)
def test_unmanageable_statements_are_refused_with_file_and_number(sql, reason):
    with pytest.raises(StatementError) as err:
        load({"010-a.sql": "SET 'x' = 'y';\n" + sql})
    assert reason in str(err.value)
    assert err.value.file == "010-a.sql" and err.value.number == 2 and err.value.line == 2


def test_set_and_unset_apply_to_following_statements_of_the_same_file_only():
    topo = load({
        "1.sql": "CREATE STREAM a AS SELECT * FROM s; SET 'auto.offset.reset'='earliest'; SET 'p'='1';"
                 "CREATE STREAM b AS SELECT * FROM s; UNSET 'p'; CREATE STREAM c AS SELECT * FROM s;",
        "2.sql": "CREATE STREAM d AS SELECT * FROM s;",
    })
    props = {s.name: dict(s.properties) for s in topo.sources}
    assert props == {"A": {}, "B": {"auto.offset.reset": "earliest", "p": "1"},
                     "C": {"auto.offset.reset": "earliest"}, "D": {}}
    assert [s.ref for s in topo.sources] == ["1.sql#1", "1.sql#4", "1.sql#6", "2.sql#1"]


def test_files_are_ordered_by_key_and_only_sql_keys_count():
    topo = load({"b.sql": "CREATE STREAM b AS SELECT * FROM s;", "README.md": "CREATE junk",
                 "a.sql": "CREATE STREAM a AS SELECT * FROM s;"})
    assert [s.name for s in topo.sources] == ["A", "B"] and topo.files == ("a.sql", "b.sql")


def test_duplicate_declarations_are_refused():
    with pytest.raises(StatementError, match="already declared by a.sql#1"):
        load({"a.sql": "CREATE STREAM x AS SELECT * FROM s;", "b.sql": "CREATE TABLE X AS SELECT * FROM t;"})


def test_split_errors_name_the_file_and_line():
    with pytest.raises(StatementError) as err:
        load({"x.sql": "CREATE STREAM a AS SELECT * FROM s;\nSELECT 'oops FROM t;"})
    assert err.value.file == "x.sql" and err.value.line == 2 and "unterminated" in str(err.value)


def test_content_hash_changes_with_any_sql_byte_but_ignores_other_keys():
    base = {"a.sql": "CREATE STREAM a AS SELECT * FROM s;"}
    h = statements.content_hash(base)
    assert statements.content_hash({**base, "notes.txt": "x"}) == h
    assert statements.content_hash({"a.sql": base["a.sql"] + " "}) != h


def test_replace_sql_rewrites_only_the_head():
    s = one("create stream if not exists `Odd Name` with (kafka_topic='t') as select * from src;")
    assert s.replace_sql() == "CREATE OR REPLACE STREAM `Odd Name` with (kafka_topic='t') as select * from src;"
    r = one("CREATE OR REPLACE TABLE t AS SELECT * FROM src;")
    assert r.replace_sql() == r.create_sql() == "CREATE OR REPLACE TABLE t AS SELECT * FROM src;"


def test_quote_name_round_trips_through_the_tokenizer():
    for name in ["PLAIN_1", "lower", "Mixed", "with space", "back`tick", "SELECT"]:
        quoted = quote_name(name)
        assert statements.canonical_name(tokenize(quoted)[0]) == name


def test_digest_ignores_layout_but_not_meaning():
    a = one("CREATE STREAM y AS SELECT a FROM src;")
    b = one("-- comment\nCREATE   STREAM y\n AS SELECT a\n FROM src;")
    c = one("CREATE STREAM y AS SELECT b FROM src;")
    assert a.digest == b.digest != c.digest
