"""No personal field in Delta's file statistics (spark/tables.py PERSONAL, STATS_COLUMNS): on real Delta,
a table `ensure` makes keeps min/max statistics of its ids and times in _delta_log but none of the
e-mail, names or phone, which DELETE and VACUUM could never remove from there; a table an older release
made gets the property too, for the files written from then on."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import types as T

from spark import tables

SCHEMA = T.StructType([
    T.StructField("customer_id", T.StringType(), False),
    T.StructField("email", T.StringType()),
    T.StructField("first_name", T.StringType()),
    T.StructField("is_active", T.BooleanType()),
    T.StructField("contact", T.StructType([T.StructField("phone", T.StringType()),
                                           T.StructField("country", T.StringType())])),
    T.StructField("tags", T.ArrayType(T.StringType())),
    T.StructField("updated_at", T.TimestampType()),
])
ROW = ("c-0001", "zyx.stats@forget.example", "Zyxstats", True, ("+3247999888", "BE"), ["a"],
       datetime(2026, 1, 2, 3, 4, 5))
PERSONAL_VALUES = ("zyx.stats@forget.example", "Zyxstats", "+3247999888")


def log_texts(path: str) -> dict[str, str]:
    """Every text file of the table's _delta_log (commits and the .crc checksums, which list the
    snapshot's files with their statistics), by name."""
    folder = Path(path, "_delta_log")
    return {n: Path(folder, n).read_text(encoding="utf-8", errors="replace")
            for n in sorted(os.listdir(folder)) if Path(folder, n).is_file() and not n.endswith(".parquet")}


def added_stats(path: str) -> list[dict]:
    stats = []
    for name, text in log_texts(path).items():
        if name.endswith(".json"):
            for line in text.splitlines():
                action = json.loads(line)
                if "add" in action and action["add"].get("stats"):
                    stats.append(json.loads(action["add"]["stats"]))
    return stats


def test_the_property_lists_every_other_column_with_statistics():
    assert tables.stats_columns(SCHEMA) == "customer_id,contact.country,updated_at"
    odd = T.StructType([T.StructField("email", T.StringType()), T.StructField("a.b", T.LongType()),
                        T.StructField("x`y", T.DateType())])
    assert tables.stats_columns(odd) == "`a.b`,`x``y`"
    assert tables.stats_columns(T.StructType([T.StructField("customer_id", T.StringType())])) is None


def test_no_personal_value_in_the_log_and_the_ids_keep_their_statistics(spark, delta_root):
    path = str(delta_root / "people")
    tables.ensure(spark, path, SCHEMA, tables.MERGED)
    spark.createDataFrame([ROW], SCHEMA).write.format("delta").mode("append").save(path)

    texts = log_texts(path)
    assert any(n.endswith(".crc") for n in texts)  # the scan covers the checksums too
    found = sorted({v for v in PERSONAL_VALUES for t in texts.values() if v in t})
    assert found == [], f"personal values in _delta_log: {found}"
    (stats,) = added_stats(path)
    assert stats["minValues"]["customer_id"] == "c-0001" and stats["maxValues"]["customer_id"] == "c-0001"
    assert "updated_at" in stats["minValues"] and stats["minValues"]["contact"] == {"country": "BE"}


def test_a_table_an_older_release_made_gets_the_property_for_its_new_files(spark, delta_root):
    path = str(delta_root / "old_people")
    DeltaTable.createIfNotExists(spark).location(path).addColumns(SCHEMA).execute()  # no property yet
    spark.createDataFrame([ROW], SCHEMA).write.format("delta").mode("append").save(path)
    assert "zyx.stats@forget.example" in "".join(log_texts(path).values())  # Delta's default: the first 32

    tables.ensure(spark, path, SCHEMA, tables.APPENDED)
    got = DeltaTable.forPath(spark, path).detail().select("properties").first()[0]
    assert got[tables.STATS_COLUMNS] == tables.stats_columns(SCHEMA)
    before = set(log_texts(path))
    later = ("c-0002", "zyx.later@forget.example", "Zyxlater", False, ("+3247111222", "NL"), [],
             datetime(2026, 2, 3, 4, 5, 6))
    spark.createDataFrame([later], SCHEMA).write.format("delta").mode("append").save(path)
    new_texts = {n: t for n, t in log_texts(path).items() if n not in before}
    assert new_texts and not any(v in t for v in ("zyx.later@forget.example", "Zyxlater", "+3247111222")
                                 for t in new_texts.values())
    # The older commit keeps its statistics: the property is not retroactive (docs/forget.md).
    assert "zyx.stats@forget.example" in "".join(log_texts(path).values())
