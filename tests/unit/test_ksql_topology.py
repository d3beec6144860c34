"""The ksqlDB topology in ksql/: topic names from the registry, Avro columns from the contracts,
segment rules from ksql/segments.yaml, and re-apply safety."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from operators.ksql import planner, segments, splitter, statements
from operators.ksql.client import Catalog, LiveQuery, LiveSource
from operators.ksql.statements import tokenize
from schemas import topics
from schemas.topics import AVRO_DIR
from tests.support.ksql_text import select_span

KSQL_DIR = Path(__file__).resolve().parents[2] / "ksql"
FILES = {p.name: p.read_text() for p in sorted(KSQL_DIR.glob("*.sql"))}
TOPOLOGY = statements.load(FILES)
BY_NAME = TOPOLOGY.by_name()


def avsc(topic: topics.Topic) -> dict:
    return json.loads((AVRO_DIR / topic.schema_file).read_text())


def ksql_type(avro_type) -> str:
    """The ksqlDB column type an Avro field type maps to (rendered like statements.render_type)."""
    if isinstance(avro_type, list):
        branches = [b for b in avro_type if b != "null"]
        assert len(branches) == 1, avro_type
        return ksql_type(branches[0])
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "timestamp-millis":
            return "TIMESTAMP"
        kind = avro_type["type"]
        if kind == "enum":
            return "STRING"
        if kind == "array":
            return f"ARRAY<{ksql_type(avro_type['items'])}>"
        if kind == "record":
            inner = ", ".join(f"`{f['name']}` {ksql_type(f['type'])}" for f in avro_type["fields"])
            return f"STRUCT<{inner}>"
        return ksql_type(kind)
    return {"string": "STRING", "int": "INT", "long": "BIGINT", "double": "DOUBLE", "float": "DOUBLE",
            "boolean": "BOOLEAN", "bytes": "BYTES"}[avro_type]


def projection(source: statements.Source) -> list[str]:
    """Output column names of a CREATE ... AS SELECT, in order (alias, else the column itself)."""
    toks = tokenize(source.text)
    start, end = select_span(toks)
    items: list[list[statements.Token]] = [[]]
    depth = 0
    for tok in toks[start:end]:
        if tok.value == "(":
            depth += 1
        elif tok.value == ")":
            depth -= 1
        if tok.value == "," and depth == 0 and tok.kind == "sym":
            items.append([])
        else:
            items[-1].append(tok)
    return [statements.canonical_name(item[-1]) for item in items]


def topic_literals() -> list[str]:
    found = []
    for text in FILES.values():
        found += re.findall(r"KAFKA_TOPIC\s*=\s*'([^']*)'", text, flags=re.IGNORECASE)
    return found


def test_every_file_parses_and_is_in_dependency_order():
    assert len(TOPOLOGY.sources) >= 10
    ordered = [s.name for s in planner.dependency_order(TOPOLOGY)]
    assert ordered == [s.name for s in TOPOLOGY.sources], "files/statements must already be in dependency order"


def test_every_topic_named_in_the_sql_is_in_the_registry():
    named = topic_literals()
    assert named, "the files name their topics"
    # An internal table's topic (ksqlDB's default: the table's name) may be read back as a stream;
    # every other topic named must be a contract in the registry.
    internal = {s.name for s in TOPOLOGY.sources if s.query and "KAFKA_TOPIC" not in s.with_props}
    for name in named:
        assert name in topics.BY_NAME or name in internal, f"{name} is not in schemas/topics.py"
    # and every KAFKA_TOPIC is one of the parsed sources' topics (nothing hides in comments)
    assert set(named) == {s.topic for s in TOPOLOGY.sources if "KAFKA_TOPIC" in s.with_props}


def test_each_ksqldb_output_topic_of_the_registry_is_written_by_exactly_one_query():
    for topic in [t for t in topics.ALL_TOPICS if "ksqldb" in t.producers]:
        writers = [s.name for s in TOPOLOGY.sources if s.query and s.topic == topic.name]
        assert len(writers) == 1, f"{topic.name}: {writers}"
        src = BY_NAME[writers[0]]
        assert src.value_format == topic.value_format.upper()
        assert src.with_props.get("KEY_FORMAT") == "KAFKA"


@pytest.mark.parametrize("topic", topics.KSQL_INPUT_TOPICS, ids=lambda t: t.name)
def test_sources_over_other_components_topics_declare_exactly_the_avro_fields(topic):
    readers = [s for s in TOPOLOGY.sources if not s.query and s.topic == topic.name]
    assert readers
    fields = {f["name"]: ksql_type(f["type"]) for f in avsc(topic)["fields"]}
    assert "customer_id" in fields
    for src in readers:
        assert src.value_format == "AVRO" and src.with_props.get("KEY_FORMAT") == "KAFKA", src.name
        keys = [c for c in src.columns if c.key]
        assert [(c.name, c.type) for c in keys] == [("customer_id", "STRING")], "string key = customer_id"
        declared = {c.name: c.type for c in src.value_columns}
        # the value's customer_id repeats the key and cannot be declared twice
        assert declared == {k: v for k, v in fields.items() if k != "customer_id"}, src.name


def test_segments_are_emitted_only_on_change_and_rules_stay_in_one_upgradable_query():
    seg = BY_NAME["S_SEGMENT_MATERIALIZED"]
    assert seg.or_replace and seg.upgradable_in_place, "rules changes upgrade it in place"
    assert [s.name for s in TOPOLOGY.sources][-1] == seg.name
    inputs = BY_NAME["T_SEGMENT_INPUTS"]
    assert inputs.groups and not inputs.or_replace and "CASE" not in inputs.text.upper(), "rules-free state"
    reader = BY_NAME[seg.reads[0]]
    assert reader.topic == inputs.topic and not reader.query
    where = seg.text[seg.text.upper().index("WHERE"):]
    blocks = segments.generated_blocks(seg.text)
    assert [tag for tag, _ in blocks] == ["", "", "previous"], "segment; current vs previous in WHERE"
    assert "<>" in where and "`order_count_history`[1]" in where


def test_segment_output_matches_the_segment_contract():
    topic = topics.SEGMENT_MATERIALIZED
    (src,) = [s for s in TOPOLOGY.sources if s.query and s.topic == topic.name]
    schema = avsc(topic)
    assert src.value_format == "AVRO"
    assert src.with_props.get("VALUE_AVRO_SCHEMA_FULL_NAME") == f"{schema['namespace']}.{schema['name']}"
    columns = projection(src)
    reader = BY_NAME[src.reads[0]]
    key = [c.name for c in reader.columns if c.key]
    assert columns[0] == key[0], "the key column comes first and is not part of the value"
    assert columns[1:] == [f["name"] for f in schema["fields"]], "value columns: names and order of the avsc"
    for f in schema["fields"]:
        assert isinstance(f["type"], list) and f["type"][0] == "null", "ksqlDB writes every value column nullable"


def test_consolidated_view_is_built_from_profiles_and_left_joins_the_summaries():
    (src,) = [s for s in TOPOLOGY.sources if s.query and s.topic == topics.CUSTOMER_CONSOLIDATED.name]
    toks = [t.upper for t in tokenize(src.text)]
    from_at = toks.index("FROM")
    assert src.reads[0] == "T_CUSTOMER_PROFILE", "customers without orders must appear: FROM the profile table"
    joins = [i for i, w in enumerate(toks) if w == "JOIN"]
    assert joins and all(toks[i - 1] == "LEFT" for i in joins), "only LEFT JOINs"
    assert from_at < joins[0]
    cols = projection(src)
    for needed in ["customer_id", "first_name", "last_name", "email", "lifecycle_stage", "is_active",
                   "lifetime_value", "order_count", "last_order_at", "activations_delivered", "activations_failed", "activations_bounced",
                   "last_engagement_at"]:
        assert needed in cols
    assert {"T_ORDER_SUMMARY", "T_ACTIVATION_SUMMARY"} <= set(src.reads)


def test_enriched_orders_carry_lifecycle_stage():
    (src,) = [s for s in TOPOLOGY.sources if s.query and s.topic == topics.ORDER_ENRICHED.name]
    assert src.joins and "lifecycle_stage" in projection(src)
    assert [c for c in projection(src) if c in {"first_name", "last_name", "email", "lifecycle_stage"}] == [
        "first_name", "last_name", "email", "lifecycle_stage"]


def test_enrichment_joins_a_table_over_the_profile_topic_in_the_same_task():
    """The order join must not read a table another persistent query writes: Kafka Streams time-aligns
    only the inputs of one task, so such a join races that query in a backfill (issue 13)."""
    (src,) = [s for s in TOPOLOGY.sources if s.query and s.topic == topics.ORDER_ENRICHED.name]
    stream, table = (BY_NAME[name] for name in src.reads)
    assert stream.kind == "STREAM" and not stream.query and stream.topic == topics.ORDER_PLACED.name
    assert table.kind == "TABLE" and not table.query, f"{table.name} is written by a query: the join would race it"
    assert table.topic == topics.CUSTOMER_PROFILE.name and not table.is_source
    assert [c.name for c in table.columns if c.key] == ["customer_id"]
    # the join's stream-time setting reaches its query (SET lines are sent as streamsProperties)
    assert int(src.properties.get("max.task.idle.ms", "-1")) >= 0
    assert src.properties.get("auto.offset.reset") == "earliest"


def test_stream_settings_for_fewer_intermediate_rows():
    for name in ("T_ORDER_BY_ID", "T_ORDER_SUMMARY", "T_ACTIVATION_BY_ID", "T_ACTIVATION_SUMMARY",
                 "T_CUSTOMER_CONSOLIDATED"):
        assert int(BY_NAME[name].properties.get("commit.interval.ms", "0")) > 2000, name
    # the change detection compares consecutive rows: none may be folded away by the record cache
    assert BY_NAME["T_SEGMENT_INPUTS"].properties.get("cache.max.bytes.buffering") == "0"


def test_profile_table_keeps_the_latest_profile():
    profile = BY_NAME["T_CUSTOMER_PROFILE"]
    assert profile.kind == "TABLE" and profile.groups and "LATEST_BY_OFFSET" in profile.text
    assert profile.reads == ("S_CUSTOMER_PROFILE_SOURCE",)


def test_reapplying_is_safe_and_nothing_drops_or_deletes():
    for s in TOPOLOGY.sources:
        assert s.if_not_exists or s.or_replace, f"{s.ref} must be IF NOT EXISTS or CREATE OR REPLACE"
        if s.or_replace:
            assert s.upgradable_in_place, f"{s.ref}: ksqlDB cannot CREATE OR REPLACE joins/aggregations"
    for name, text in FILES.items():
        normalized = " ".join(p.normalized.upper() for p in splitter.split(text))
        assert "DELETE TOPIC" not in normalized and "DROP " not in normalized, name
    # planning twice against a server that has everything: nothing to do
    live = Catalog(
        {s.name: LiveSource(s.name, s.kind, s.topic) for s in TOPOLOGY.sources},
        tuple(LiveQuery(f"Q_{s.name}", (s.name,), "RUNNING") for s in TOPOLOGY.sources if s.query),
    )
    records = {s.name: planner.Record(s.name, s.ref, planner.short(s.digest), "created") for s in TOPOLOGY.sources}
    assert planner.plan(TOPOLOGY, records, live).steps == []


# ---- segment rules: one place ---------------------------------------------------------------------


RULES = segments.load_rules(KSQL_DIR)


def test_generated_case_in_the_sql_is_rendered_from_segments_yaml():
    carriers = [name for name, text in FILES.items() if segments.generated_blocks(text)]
    assert len(carriers) == 1, "exactly one file carries the generated segment blocks"
    name = carriers[0]
    assert segments.render(FILES[name], RULES) == FILES[name], "stale: run `make ksql-segments`"
    for tag, block in segments.generated_blocks(FILES[name]):
        assert block.split() == segments.case_expression(RULES, inputs=tag).split()
        for rule in RULES.rules:
            assert f"THEN '{rule.segment}'" in block


def test_unknown_block_tag_is_refused():
    sql = "-- BEGIN GENERATED segment rules [older]\n-- END GENERATED segment rules\n"
    with pytest.raises(segments.RulesError, match="unknown generated block tag"):
        segments.render(sql, RULES)


def test_every_segment_name_is_documented_in_the_contract():
    doc = next(f["doc"] for f in avsc(topics.SEGMENT_MATERIALIZED)["fields"] if f["name"] == "segment")
    for segment in RULES.segments:
        assert segment in doc, f"{segment} is not mentioned in segment_materialized.avsc"


@pytest.mark.parametrize(
    "stage,value,count,expected",
    [
        ("evangelist", 1500.0, 3, "vip_evangelist"),
        ("evangelist", 999.99, 3, "loyal"),  # below the VIP threshold, above the loyal value
        ("evangelist", 100.0, 1, "nurture"),
        ("churn-risk", 5000.0, 50, "at_risk"),
        ("customer", 10.0, 5, "loyal"),
        ("customer", 500.0, 1, "loyal"),
        ("prospect", None, None, "new_prospect"),  # a customer without orders
        ("prospect", 20.0, 1, "nurture"),
        ("customer", 0.0, 0, "nurture"),
    ],
)
def test_python_evaluation_of_the_rules_before_a_customer_is_scored(stage, value, count, expected):
    assert segments.segment_for(RULES, stage, value, count) == expected


@pytest.mark.parametrize(
    "declared,value,count,behavioural,score,expected",
    [
        # the customer: a coin said churn-risk, twelve orders say otherwise
        ("churn-risk", 782.33, 12, "evangelist", 0.71, "loyal"),
        ("prospect", 1500.0, 9, "evangelist", 0.8, "vip_evangelist"),
        ("evangelist", 300.0, 2, "churn-risk", 0.05, "at_risk"),
        ("churn-risk", 120.0, 2, "customer", 0.45, "ready_to_buy"),
        ("churn-risk", 120.0, 2, "customer", 0.2, "nurture"),
        ("customer", 0.0, 0, "prospect", 0.1, "new_prospect"),
    ],
)
def test_python_evaluation_of_the_rules_on_behaviour(declared, value, count, behavioural, score, expected):
    assert segments.segment_for(RULES, declared, value, count, behavioural, score) == expected


def test_rules_are_validated():
    with pytest.raises(segments.RulesError, match="unknown keys"):
        segments.parse_rules({"version": 1, "default": "x", "rules": [{"segment": "a", "min_ltv": 1}]})
    with pytest.raises(segments.RulesError, match="no condition"):
        segments.parse_rules({"version": 1, "default": "x", "rules": [{"segment": "a"}]})
    with pytest.raises(segments.RulesError, match="version"):
        segments.parse_rules({"default": "x", "rules": []})


def test_stale_generated_block_is_detected(tmp_path):
    (tmp_path / "segments.yaml").write_text((KSQL_DIR / "segments.yaml").read_text().replace("1000", "2000"))
    name = next(n for n, t in FILES.items() if segments.generated_block(t) is not None)
    (tmp_path / name).write_text(FILES[name])
    assert segments.main(["--check", str(tmp_path)]) == 1
    assert segments.main(["--write", str(tmp_path)]) == 0
    rewritten = (tmp_path / name).read_text()
    assert "`lifetime_value` >= 2000.0" in rewritten and "`lifetime_value_history`[1] >= 2000.0" in rewritten
    assert segments.main(["--check", str(tmp_path)]) == 0


# ---- segments on behaviour ------------------------------------------------------------------------

BEHAVIOUR_RULES = segments.parse_rules({"version": 1, "default": "nurture", "rules": [
    {"segment": "vip", "stage": "evangelist", "min_lifetime_value": 1000},
    {"segment": "at_risk", "stage": ["churn-risk"]},
    {"segment": "hot", "min_score": 0.6},
    {"segment": "cold", "max_score": 0.1, "lifecycle_stage": "customer"},
]})


@pytest.mark.parametrize(
    "declared,value,count,behavioural,score,expected",
    [
        # the coin said churn-risk, the behaviour says evangelist: the behaviour wins
        ("churn-risk", 1500.0, 12, "evangelist", 0.7, "vip"),
        ("evangelist", 1500.0, 12, "churn-risk", 0.7, "at_risk"),
        # not scored yet: the declared stage is all there is
        ("churn-risk", 1500.0, 12, None, None, "at_risk"),
        ("evangelist", 1500.0, 12, None, None, "vip"),
        # score conditions: an unscored customer matches none of them
        ("customer", 10.0, 1, "customer", 0.6, "hot"),
        ("customer", 10.0, 1, "customer", 0.1, "cold"),
        ("customer", 10.0, 1, None, None, "nurture"),
    ],
)
def test_stage_reads_the_behaviour_once_scored_and_the_declared_stage_until_then(
        declared, value, count, behavioural, score, expected):
    assert segments.segment_for(BEHAVIOUR_RULES, declared, value, count, behavioural, score) == expected


def test_behaviour_conditions_render_as_ksql_over_the_current_and_previous_inputs():
    now = segments.case_expression(BEHAVIOUR_RULES)
    assert "WHEN COALESCE(`behavioural_stage`, `lifecycle_stage`) = 'evangelist' AND `lifetime_value` >= 1000.0" in now
    assert "WHEN `score` >= 0.6 THEN 'hot'" in now
    assert "WHEN `lifecycle_stage` = 'customer' AND `score` <= 0.1 THEN 'cold'" in now
    previous = segments.case_expression(BEHAVIOUR_RULES, inputs="previous")
    assert "COALESCE(`behavioural_stage_history`[1], `lifecycle_stage_history`[1]) = 'churn-risk'" in previous
    assert "`score_history`[1] >= 0.6" in previous
    with pytest.raises(segments.RulesError, match="min_score must be a number"):
        segments.parse_rules({"version": 1, "default": "x", "rules": [{"segment": "a", "min_score": "high"}]})
    with pytest.raises(segments.RulesError, match="stage must be a stage name"):
        segments.parse_rules({"version": 1, "default": "x", "rules": [{"segment": "a", "stage": ["it's"]}]})


def test_segments_read_the_scores_through_a_co_partitioned_table_join():
    facts = BY_NAME["T_SEGMENT_FACTS"]
    assert facts.query and set(facts.reads) == {"T_SEGMENT_CUSTOMER", "T_PROPENSITY_SCORE"}
    assert "LEFT JOIN T_PROPENSITY_SCORE" in " ".join(facts.text.split())
    for name, topic in (("T_SEGMENT_CUSTOMER", topics.CUSTOMER_CONSOLIDATED), ("T_PROPENSITY_SCORE",
                                                                              topics.PROPENSITY_SCORE)):
        table = BY_NAME[name]
        assert table.kind == "TABLE" and not table.query and table.topic == topic.name, name
        assert topic.partitions == topics.CUSTOMER_PROFILE.partitions, "co-partitioned with the view"
    assert BY_NAME["S_SEGMENT_SOURCE"].topic == facts.topic
    for column in ("behavioural_stage", "score"):
        assert f"`{column}_history`" in BY_NAME["T_SEGMENT_INPUTS"].text
