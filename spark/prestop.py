"""preStop hook of the Spark driver pods: hand Kubernetes' stop to the Python job itself.

In a SparkApplication the container's main process is spark-submit's JVM and the job's Python runs as
its child (Spark's PythonRunner). Kubernetes' SIGTERM reaches only the JVM, whose shutdown hook stops
the SparkContext under the running micro-batch; the Python side never hears of it (checked with
spark-submit 4.1.1 and a streaming query: no signal reached Python, exit 143). The kubelet runs this
hook before it sends that SIGTERM: the hook sends SIGTERM to the job's Python process, whose handler
(``spark.runtime.Stop``) stops the queries between micro-batches, and waits until the job has exited;
PythonRunner then ends the JVM with the job's exit code.

    python -m spark.prestop            # what the driver's lifecycle.preStop runs
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

JOBS_MARKER = "/spark/jobs/"  # the mainApplicationFile of every SparkApplication lives there
# Within the pod's terminationGracePeriodSeconds (chart: 60 s), above spark.runtime.BATCH_GRACE_S.
WAIT_S = 50.0


def job_pids(proc: Path = Path("/proc"), me: int | None = None) -> list[int]:
    """Python processes whose command line runs a file under spark/jobs/ (not this hook itself)."""
    me = os.getpid() if me is None else me
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if args and "python" in Path(args[0]).name and any(JOBS_MARKER in a for a in args[1:]):
            found.append(int(entry.name))
    return sorted(found)


def stop_jobs(find: Callable[[], Iterable[int]] = job_pids, wait_s: float = WAIT_S,
              kill: Callable[[int, int], None] = os.kill, sleep: Callable[[float], None] = time.sleep) -> int:
    """SIGTERM every job process, then wait until none is left; returns how many were signalled."""
    pids = list(find())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # ended meanwhile
            kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while pids and time.monotonic() < deadline:
        alive = set(find())
        pids = [p for p in pids if p in alive]
        if pids:
            sleep(0.2)
    if pids:
        print(f"prestop: job process(es) {pids} still running after {wait_s:g}s", file=sys.stderr)
    return len(pids)


def main() -> None:
    stop_jobs()


if __name__ == "__main__":
    main()
