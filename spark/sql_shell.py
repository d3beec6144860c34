"""``make spark-sql-local``: a Spark SQL shell over the Delta tables under DELTA_ROOT, each registered
by name (bronze_customer_profile, silver_orders, gold_c360, ...), with the same jars and Delta
configuration as the jobs. On kind the cluster's tables sit under ./data/delta on the host too.

    python -m spark.sql_shell [-e "SELECT ..."]   # extra arguments go to spark-sql
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pyspark

from spark.entities import ENTITIES
from spark.session import DELTA_CONF, local_jars
from spark.settings import JobSettings


def table_names(settings: JobSettings) -> dict[str, str]:
    names = {f"bronze_{e.name}": settings.table("bronze", e.name) for e in ENTITIES}
    names |= {f"silver_{e.silver}": settings.table("silver", e.silver) for e in ENTITIES}
    names |= {"gold_c360": settings.table("gold", "c360"), "gold_propensity": settings.table("gold", "propensity"),
              "quarantine_records": settings.table("quarantine", "records")}
    return names


def init_sql(settings: JobSettings) -> str:
    """Temporary views over the tables that exist now (nothing is written to a metastore)."""
    if "`" in settings.delta_root:
        raise ValueError(f"DELTA_ROOT must not contain a backtick: {settings.delta_root!r}")
    lines = []
    for name, path in table_names(settings).items():
        if Path(path, "_delta_log").is_dir():
            # Names are ours and the path is backtick-free: nothing user-controlled is spliced in.
            lines.append(f"CREATE OR REPLACE TEMPORARY VIEW {name} AS SELECT * FROM delta.`{path}`;")  # noqa: S608
    return "\n".join(lines) + "\n"


def argv(settings: JobSettings, init_file: str, extra: list[str]) -> list[str]:
    spark_sql = str(Path(pyspark.__file__).parent / "bin" / "spark-sql")
    args = [spark_sql, "--master", settings.spark_master or "local[2]"]
    jars = local_jars(settings.jars_dir or None)
    if jars:
        args += ["--jars", ",".join(jars)]
    for key, value in {**DELTA_CONF, "spark.sql.session.timeZone": "UTC"}.items():
        args += ["--conf", f"{key}={value}"]
    return [*args, "-i", init_file, *extra]


def main() -> None:
    settings = JobSettings.from_env()
    init = init_sql(settings)
    if not init.strip():
        print(f"spark-sql: no Delta tables under {settings.delta_root} yet (run the pipeline first)", file=sys.stderr)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as fh:
        fh.write(init)
    print("tables: " + ", ".join(n for n, p in table_names(settings).items() if Path(p, "_delta_log").is_dir()),
          file=sys.stderr)
    command = argv(settings, fh.name, sys.argv[1:])
    os.execv(command[0], command)  # noqa: S606 - replace this process with the spark-sql CLI


if __name__ == "__main__":
    main()
