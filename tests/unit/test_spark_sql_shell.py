from __future__ import annotations

import pytest

from spark import sql_shell
from spark.settings import JobSettings


def test_views_only_for_tables_that_exist(tmp_path):
    (tmp_path / "gold" / "c360" / "_delta_log").mkdir(parents=True)
    (tmp_path / "silver" / "orders" / "_delta_log").mkdir(parents=True)
    sql = sql_shell.init_sql(JobSettings.from_env({"DELTA_ROOT": str(tmp_path)}))
    assert f"CREATE OR REPLACE TEMPORARY VIEW gold_c360 AS SELECT * FROM delta.`{tmp_path}/gold/c360`;" in sql
    assert "silver_orders" in sql and "silver_customers" not in sql and "bronze_" not in sql


def test_backtick_in_root_is_refused():
    with pytest.raises(ValueError, match="backtick"):
        sql_shell.init_sql(JobSettings.from_env({"DELTA_ROOT": "/data/x`; DROP"}))


def test_cli_carries_delta_conf_jars_and_init_file(tmp_path):
    (tmp_path / "a.jar").write_text("")
    settings = JobSettings.from_env({"DELTA_ROOT": str(tmp_path), "SPARK_JARS_DIR": str(tmp_path)})
    args = sql_shell.argv(settings, "/tmp/init.sql", ["-e", "SELECT 1"])
    assert args[0].endswith("bin/spark-sql")
    assert "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" in args
    assert args[args.index("--jars") + 1] == f"{tmp_path}/a.jar"
    assert args[-4:] == ["-i", "/tmp/init.sql", "-e", "SELECT 1"]
