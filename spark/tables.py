"""Delta table plumbing: create-if-missing with properties, wait for an upstream table, idempotent MERGE."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

log = logging.getLogger(__name__)

# Every micro-batch adds a small file. Auto compaction (a post-commit step of the writer) folds a
# table's small files together once about 50 have gathered, in a dataChange=false commit that
# streams and change feeds downstream skip, so the file count, and with it a batch's cost, does
# not creep up with the stream's age. The replaced files stay on disk for Delta's retention (7 days)
# until a VACUUM (README, "Delta housekeeping").
APPENDED = {"delta.autoOptimize.autoCompact": "true"}
CDF = {"delta.enableChangeDataFeed": "true"}
# Tables updated by MERGE: a change data feed for the next layer, and deletion vectors so a MERGE
# marks the few replaced rows instead of rewriting every file that holds one of them.
MERGED = {**APPENDED, **CDF, "delta.enableDeletionVectors": "true"}

# A customer's personal fields (the profile contract's name, e-mail and phone). Delta writes per-file
# min/max statistics (of the first 32 columns by default) into the _delta_log commits, checksums and
# checkpoints, which DELETE, REORG and VACUUM never rewrite: an erased customer's e-mail would stay in
# the log until log cleanup (30 days; docs/forget.md). So a table holding any of these fields names its
# statistics columns itself: every other column, so the ids and times that MERGE conditions and reads
# filter on keep their data skipping. One rule, applied by `ensure`, so no writer can forget it.
PERSONAL = frozenset({"email", "first_name", "last_name", "phone"})
STATS_COLUMNS = "delta.dataSkippingStatsColumns"
# The types Delta keeps min/max for; it rejects the property if it names another (boolean, binary,
# array, map: DELTA_COLUMN_DATA_SKIPPING_NOT_SUPPORTED_TYPE).
_STATS_TYPES = (T.StringType, T.NumericType, T.DateType, T.TimestampType, T.TimestampNTZType)
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _quoted(name: str) -> str:
    return name if _PLAIN.fullmatch(name) else "`" + name.replace("`", "``") + "`"


def stats_columns(schema: T.StructType) -> str | None:
    """The ``delta.dataSkippingStatsColumns`` value for ``schema``: every column with statistics except
    the personal ones (matched by name at any depth; a struct's other fields are listed one by one as
    ``parent.child``). None when the schema holds no personal field: Delta's default is fine there."""
    found: list[str] = []
    personal = False

    def walk(fields: list[T.StructField], prefix: str) -> None:
        nonlocal personal
        for field in fields:
            if field.name in PERSONAL:
                personal = True
            elif isinstance(field.dataType, T.StructType):
                walk(field.dataType.fields, f"{prefix}{_quoted(field.name)}.")
            elif isinstance(field.dataType, _STATS_TYPES):
                found.append(prefix + _quoted(field.name))

    walk(schema.fields, "")
    return ",".join(found) if personal else None


def exists(spark: SparkSession, path: str) -> bool:
    return DeltaTable.isDeltaTable(spark, path)


def ensure(spark: SparkSession, path: str, schema: T.StructType, properties: dict[str, str] | None = None) -> None:
    """Create an empty table with this schema unless one is there (only the table's writer calls this).
    A table an older release made gets the columns and properties it lacks; a property someone has
    set to another value on purpose is left alone."""
    properties = dict(properties or {})
    stats = stats_columns(schema)
    if stats is not None:
        properties.setdefault(STATS_COLUMNS, stats)
    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
    for key, value in properties.items():
        builder = builder.property(key, value)
    builder.execute()
    table = f"delta.`{path}`"
    existing = DeltaTable.forPath(spark, path)
    present = set(existing.toDF().columns)
    new_fields = [f for f in schema.fields if f.name not in present]
    if new_fields:
        # New columns are nullable whatever the schema says: the rows already there have none.
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in new_fields)
        spark.sql(f"ALTER TABLE {table} ADD COLUMNS ({columns})")
        log.info("table %s: added columns %s", path, ", ".join(f.name for f in new_fields))
    # After the columns: Delta checks that the statistics columns exist. On a table that already has
    # files, the statistics property applies to the files written from now on (the older commits
    # keep theirs until log cleanup).
    have = existing.detail().select("properties").first()[0] or {}
    missing = {k: v for k, v in properties.items() if k not in have}
    if missing:
        assignments = ", ".join(f"'{k}' = '{_literal(v)}'" for k, v in sorted(missing.items()))
        spark.sql(f"ALTER TABLE {table} SET TBLPROPERTIES ({assignments})")
        log.info("table %s: set %s", path, ", ".join(sorted(missing)))


def _literal(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def wait_for(spark: SparkSession, path: str, timeout_s: float | None = None, poll_s: float = 5.0) -> None:
    """Block until an upstream job has created ``path`` (jobs start in any order in the cluster)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    announced = False
    while not exists(spark, path):
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"Delta table {path} did not appear within {timeout_s:.0f}s")
        if not announced:
            log.info("waiting for upstream table %s", path)
            announced = True
        time.sleep(poll_s)


RECENT_COMMITS = 20


def committed(spark: SparkSession, path: str, token: str) -> bool:
    """Whether one of the table's recent commits carries ``token`` in its commitInfo.userMetadata."""
    if not exists(spark, path):
        return False  # the first write creates the table
    recent = DeltaTable.forPath(spark, path).history(RECENT_COMMITS).select("userMetadata").collect()
    return any(row.userMetadata == token for row in recent)


def batch_token(app_id: str, batch_id: int) -> str:
    return f"{app_id}@{batch_id}"


# Why not Delta's txnAppId/txnVersion: on Delta 4.4 every such commit reconstructs the table's
# transaction state (~6 s a commit on 2 cores, measured against ~0.7 s for the same append).
# Each table has exactly one writer and its batches run in order, so "was batch N the write
# I already made?" is answered by the token on the table's own recent commits (~0.25 s).


@contextlib.contextmanager
def tagged(spark: SparkSession, token: str) -> Iterator[None]:
    """Tag the DML commits made inside with ``token`` (the stream's own session clone)."""
    spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", token)
    try:
        yield
    finally:
        spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")


class Ledger:
    """The newest batch id one run of a query has written (or found written) per table it writes.

    A table has one writer and a run's batches come in order, each id once, so a batch id above the
    newest one noted cannot be in the table yet, and its write needs no look at the table's history
    (0.2-0.8 s a batch on 2 cores, bench/bench_batch_profile.py). The first batch of a run (the one a
    restart may replay) and any id at or below the newest are looked up as before. One ledger per
    run: a query body builds its own, so a restarted query starts with an empty one."""

    def __init__(self) -> None:
        self._newest: dict[tuple[str, str], int] = {}

    def new(self, path: str, app_id: str, batch_id: int) -> bool:
        """Whether ``batch_id`` is known not to be in the table yet."""
        newest = self._newest.get((path, app_id))
        return newest is not None and batch_id > newest

    def note(self, path: str, app_id: str, batch_id: int) -> None:
        key = (path, app_id)
        self._newest[key] = max(batch_id, self._newest.get(key, batch_id))


def _already(spark: SparkSession, path: str, app_id: str, batch_id: int, ledger: Ledger | None) -> bool:
    token = batch_token(app_id, batch_id)
    if ledger is not None and ledger.new(path, app_id, batch_id):
        return False
    if committed(spark, path, token):
        log.info("%s already committed to %s; skipping the replayed batch", token, path)
        if ledger is not None:
            ledger.note(path, app_id, batch_id)
        return True
    return False


def merge_once(spark: SparkSession, path: str, app_id: str, batch_id: int, execute: Callable[[], None],
               ledger: Ledger | None = None) -> bool:
    """Run a MERGE for a micro-batch unless that batch's MERGE is already in the table (a replay
    after a crash between the Delta commit and the checkpoint commit). Returns whether it ran."""
    if _already(spark, path, app_id, batch_id, ledger):
        return False
    with tagged(spark, batch_token(app_id, batch_id)):
        execute()
    if ledger is not None:
        ledger.note(path, app_id, batch_id)
    return True


def append_once(df: DataFrame, path: str, app_id: str, batch_id: int, merge_schema: bool = True,
                ledger: Ledger | None = None) -> bool:
    """Append a micro-batch's rows unless that batch's append is already in the table."""
    token = batch_token(app_id, batch_id)
    if _already(df.sparkSession, path, app_id, batch_id, ledger):
        return False
    (
        df.write.format("delta")
        .mode("append")
        .option("userMetadata", token)
        .option("mergeSchema", str(merge_schema).lower())
        .save(path)
    )
    if ledger is not None:
        ledger.note(path, app_id, batch_id)
    return True
