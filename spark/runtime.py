"""Entry-point plumbing shared by the jobs: settings, checks, session, trigger, graceful shutdown.

How an entry point ends, in one line of its own on stderr, never a Python traceback: a bad setting or
an unusable dependency (exit 2; checked before Spark starts wherever that is possible, see
spark/preflight.py), a failed query (exit 1; Spark's own log keeps the failure's detail), SIGTERM or
Ctrl-C (exit 0, see :class:`Stop` and :class:`BatchGate`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable

from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import DataStreamWriter, StreamingQuery

from common.logs import configure
from common.settings import ConfigError
from spark.preflight import DependencyError
from spark.session import MissingJarsError, build_session
from spark.settings import JobSettings

log = logging.getLogger(__name__)

Check = Callable[[JobSettings], None]
# How often the main thread looks up from awaiting the queries (a signal is acted on within this).
POLL_S = 1.0


def session_for(job: str, settings: JobSettings) -> SparkSession:
    try:
        spark = build_session(
            f"marketing-engine-{job}", master=settings.spark_master or None, jars_dir=settings.jars_dir or None
        )
    except (MissingJarsError, FileNotFoundError) as exc:
        _fail(job, exc, 2)
    spark.sparkContext.setLogLevel("WARN")
    return spark


def with_trigger(writer: DataStreamWriter, settings: JobSettings) -> DataStreamWriter:
    if settings.trigger == "available-now":
        return writer.trigger(availableNow=True)
    if settings.trigger == "once":
        return writer.trigger(once=True)
    return writer.trigger(processingTime=settings.trigger)


class QueryFailed(RuntimeError):
    def __init__(self, query: StreamingQuery, error: object):
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        super().__init__(f"query {query.name} failed: {first}")


class Stop:
    """SIGTERM (Kubernetes stopping the pod) and SIGINT (Ctrl-C).

    While the job starts, nothing has been written that is not atomic (a Delta commit is), so a signal
    ends the process at once: the JVM, a child that watches our stdin, goes with it. Once the queries
    run, the handler only records the signal; the main thread, which wakes from awaiting the queries
    every POLL_S, stops them (:func:`stop_between_batches`). Stopping them inside the handler
    re-entered the py4j connection the main thread was blocked reading ("reentrant call inside
    BufferedReader", then a Py4JError).
    """

    def __init__(self, job: str):
        self.job = job
        self.received: str | None = None
        self.running = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.running:
            self.received = self.received or name
            return
        # No print/logging here: the main thread may be inside a write to the same stream.
        os.write(2, f"{self.job}: {name} during start-up; exiting before any query ran\n".encode())
        os._exit(0)


class BatchGate:
    """Lets the main thread stop the queries between micro-batches, never inside one.

    ``StreamingQuery.stop()`` cancels the query's Spark jobs and interrupts its thread, and the
    foreachBatch body runs its Spark calls on that very thread (py4j pins a Python callback's calls
    to the JVM thread that made it): a Delta write in progress fails half-way, a checkpoint commit in
    progress is interrupted, and py4j and Spark log both with stack traces. So a stop

    1. holds back any body that starts from now on and waits until none runs (the batch in flight
       finishes and commits normally);
    2. waits until each query is either idle (waiting for its next trigger) or has its next body held
       at the gate (so no trigger is half-way through planning or committing);
    3. calls ``stop()``: no further trigger starts; an idle query's wait is interrupted;
    4. releases a held body, which first clears the interrupt ``stop()`` left on its thread, then
       runs its batch and lets the query commit it, after which the query ends.

    Every batch is thus committed whole. If a batch outlives BATCH_GRACE_S it is stopped anyway and,
    uncommitted, replayed on restart, where the writers' batch tokens (spark/tables.py
    ``append_once`` / ``merge_once``) skip the tables it had reached.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running = 0
        self._held: set[str] = set()
        self._holding = False

    def __call__(self, query: str, body: Callable[[DataFrame, int], None]) -> Callable[[DataFrame, int], None]:
        def gated(batch: DataFrame, batch_id: int) -> None:
            with self._cond:
                resumed = self._holding
                if resumed:
                    self._held.add(query)
                    self._cond.notify_all()
                    self._cond.wait_for(lambda: not self._holding)
                    self._held.discard(query)
                self._running += 1
            try:
                if resumed:
                    _clear_stop_interrupt(batch.sparkSession)
                body(batch, batch_id)
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()

        return gated

    def hold(self, timeout: float) -> bool:
        """Hold new bodies back; wait until none runs. False if one still runs after ``timeout``."""
        with self._cond:
            self._holding = True
            return self._cond.wait_for(lambda: self._running == 0, timeout)

    def held(self, query: str) -> bool:
        with self._cond:
            return query in self._held

    def release(self) -> None:
        with self._cond:
            self._holding = False
            self._cond.notify_all()


def _clear_stop_interrupt(spark: SparkSession, timeout: float = 10.0) -> None:
    """On the query's own thread: wait for the interrupt stop() sends, then clear it."""
    thread = spark.sparkContext._jvm.java.lang.Thread  # type: ignore[union-attr]
    deadline = time.monotonic() + timeout
    while not thread.currentThread().isInterrupted() and time.monotonic() < deadline:
        time.sleep(0.01)
    thread.interrupted()


each_batch = BatchGate()  # the process's gate: jobs wrap their foreachBatch bodies in it
# How long a stop waits for a running batch to finish before stopping anyway (the batch is then
# cancelled, noisily, and replayed on restart); within Kubernetes' default 30 s grace period.
BATCH_GRACE_S = 25.0


def _between_triggers(q: StreamingQuery, gate: BatchGate) -> bool:
    return gate.held(q.name) or not q.isActive or not q.status["isTriggerActive"]


def stop_between_batches(queries: list[StreamingQuery], gate: BatchGate = each_batch) -> None:
    deadline = time.monotonic() + BATCH_GRACE_S
    if gate.hold(BATCH_GRACE_S):
        while not all(_between_triggers(q, gate) for q in queries) and time.monotonic() < deadline:
            time.sleep(0.01)
    else:
        log.warning("a micro-batch still runs after %.0fs; stopping it (it is replayed on restart)", BATCH_GRACE_S)
    # stop() blocks until the query's thread ends, and that thread may be waiting for a held body.
    stoppers = [threading.Thread(target=q.stop, name=f"stop-{q.name}", daemon=True) for q in queries]
    for stopper in stoppers:
        stopper.start()
    marked = time.monotonic() + 30  # stop() marks a query stopped first thing; this is only a backstop
    while any(q.isActive for q in queries) and time.monotonic() < marked:
        time.sleep(0.01)
    gate.release()
    for stopper in stoppers:
        stopper.join()


def await_all(spark: SparkSession, queries: list[StreamingQuery], stop: Stop) -> None:
    """Run until all queries finish (available-now), one fails (QueryFailed: the operator restarts the
    app) or a stop signal arrives (the queries stopped from this thread, between micro-batches)."""
    stop.running = True
    while True:
        for q in queries:
            if not q.isActive and q.exception() is not None:
                raise QueryFailed(q, q.exception())
        active = [q for q in queries if q.isActive]
        if not active:
            return
        if stop.received:
            log.info("%s: stopping %d queries", stop.received, len(active))
            stop_between_batches(active)
            return
        try:
            active[0].awaitTermination(POLL_S)
        except StreamingQueryException:
            continue  # reported at the top of the loop


def _fail(job: str, exc: BaseException, code: int):  # noqa: ANN202 - NoReturn
    print(f"{job}: {exc}", file=sys.stderr)
    raise SystemExit(code) from None


def _settings(job: str) -> JobSettings:
    try:
        return JobSettings.from_env()
    except ConfigError as exc:
        _fail(job, exc, 2)


def _prepare(job: str, checks: Iterable[Check]) -> JobSettings:
    settings = _settings(job)
    configure(settings.log_level)
    try:
        for check in checks:
            check(settings)
    except DependencyError as exc:
        _fail(job, exc, 2)
    return settings


def main_batch(job: str, run: Callable[[SparkSession, JobSettings], object], checks: Iterable[Check] = ()) -> None:
    """A batch entry point (train, evaluate): same settings, checks and session, runs once."""
    settings = _prepare(job, checks)
    spark = session_for(job, settings)
    try:
        run(spark, settings)
    except DependencyError as exc:
        _fail(job, exc, 2)
    finally:
        spark.stop()


def main(job: str, start: Callable[[SparkSession, JobSettings], list[StreamingQuery]],
         checks: Iterable[Check] = ()) -> None:
    """A streaming entry point: checks, session, start the queries, run them until done or stopped."""
    stop = Stop(job)
    settings = _prepare(job, checks)
    spark = session_for(job, settings)
    try:
        await_all(spark, start(spark, settings), stop)
    except DependencyError as exc:
        _fail(job, exc, 2)
    except QueryFailed as exc:
        _fail(job, exc, 1)
    finally:
        spark.stop()
    if stop.received:
        log.info("%s: stopped on %s", job, stop.received)
