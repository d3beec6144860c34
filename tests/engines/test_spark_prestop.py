"""The driver pods' preStop hook (spark/prestop.py) through a real spark-submit, as a SparkApplication
runs a job: the JVM is the main process and the job's Python its child, so the stop must reach the
Python job through the hook for the queries to stop between micro-batches and the JVM to exit 0."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyspark

from spark import prestop
from tests.support.paths import REPO

JOB = """\
import sys
sys.path.insert(0, {repo!r})
from pyspark.sql import SparkSession
from spark import runtime
stop = runtime.Stop("ratejob")
spark = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
         .config("spark.sql.shuffle.partitions", "1").getOrCreate())
query = (spark.readStream.format("rate").option("rowsPerSecond", 20).load().writeStream
         .option("checkpointLocation", {checkpoint!r})
         .foreachBatch(runtime.each_batch("rate", lambda batch, _id: batch.count())).start())
print("JOB: running", flush=True)
runtime.await_all(spark, [query], stop)
print("JOB: stopped between batches", flush=True)
spark.stop()
"""


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_prestop_stops_a_spark_submit_job_cleanly(tmp_path):
    job = tmp_path / "spark" / "jobs" / "ratejob.py"  # under spark/jobs/, as in the image
    job.parent.mkdir(parents=True)
    job.write_text(JOB.format(repo=str(REPO), checkpoint=str(tmp_path / "checkpoint")))
    spark_home = Path(pyspark.__file__).parent
    env = {**os.environ, "SPARK_HOME": str(spark_home), "PYSPARK_PYTHON": sys.executable,
           "PYSPARK_DRIVER_PYTHON": sys.executable}
    out = tmp_path / "out.log"
    with out.open("w") as sink:
        submit = subprocess.Popen([str(spark_home / "bin" / "spark-submit"), "--master", "local[1]", str(job)],
                                  stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180
        while "JOB: running" not in out.read_text() and submit.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "JOB: running" in out.read_text(), out.read_text()[-3000:]
        time.sleep(3)  # a few micro-batches in

        def ours() -> list[int]:
            return [p for p in prestop.job_pids() if str(job) in _cmdline(p)]

        found = ours()
        assert len(found) == 1 and found[0] != submit.pid, "the job's Python process, a child of the JVM"
        assert prestop.stop_jobs(find=ours) == 0, "the job exited within the hook's wait"
        assert submit.wait(timeout=60) == 0
    finally:
        if submit.poll() is None:
            submit.kill()
    log = out.read_text()
    assert "JOB: stopped between batches" in log
    assert "Traceback" not in log and "Py4JError" not in log, log[-3000:]


def test_job_pids_ignores_other_processes(tmp_path):
    fake = tmp_path / "proc"
    for pid, argv in {"10": ["/opt/venv/bin/python", "-u", "/opt/marketing-engine/spark/jobs/bronze.py"],
                      "11": ["/usr/lib/jvm/bin/java", "-cp", "x", "/opt/marketing-engine/spark/jobs/bronze.py"],
                      "12": ["/opt/venv/bin/python", "-m", "spark.prestop"],
                      "13": ["/opt/venv/bin/python3.11", "/x/spark/jobs/gold.py", "--flag"]}.items():
        (fake / pid).mkdir(parents=True)
        (fake / pid / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (fake / "self").mkdir()
    assert prestop.job_pids(fake, me=13) == [10]
    assert prestop.job_pids(fake, me=1) == [10, 13]
