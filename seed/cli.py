"""``python -m seed``: simulate customers and publish their events (HTTP Proxy or Kafka).

Settings come from the environment (``seed.settings.SeedSettings``); command-line options override
them. Exit codes: 0 done, 1 publishing failed (unreachable endpoint, unknown topic, schema rejected,
...), 2 invalid option or environment variable, 130 interrupted. Every failure is one line on stderr
naming the dependency, the address tried and the variable that points there; when nothing had been
acknowledged it is the only line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from common import logs
from common import settings as cs
from schemas.topics import SOURCE_TOPICS, Topic
from seed.progress import Progress, Throttle
from seed.publish import KAFKA_LOGGER, Publisher, PublishError, make_publisher
from seed.settings import TRANSPORTS, ConfigError, SeedSettings, iso_date, positive_float
from seed.simulator import Event, SimConfig, Simulator, sidecar_path, write_ground_truth

log = logging.getLogger("seed")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
MAX_CHUNK = 20000  # events simulated before they are handed to the publisher (per-topic publish calls)


class _Parser(argparse.ArgumentParser):
    err_stream: TextIO | None = None

    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage + error)
        print(f"seed: error: {message} (see python -m seed --help)", file=self.err_stream or sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _arg(parse: Callable[[str], Any], expected: str) -> Callable[[str], Any]:
    def convert(raw: str) -> Any:
        try:
            return parse(raw)
        except (ValueError, TypeError) as exc:
            raise argparse.ArgumentTypeError(f"{raw!r} is invalid: expected {expected} ({exc})") from None

    convert.__name__ = expected  # argparse names the type in some messages
    return convert


def _rate(raw: str) -> float:
    if raw.lower() in {"unthrottled", "max", "inf"}:
        return 0.0
    return cs.non_negative_float(raw)


def build_parser(stderr: TextIO | None = None) -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m seed",
        description="Simulate customers with hidden traits and publish their profile, order and activation "
                    "events as Avro. Options override the SEED_* / PUBLISH_* environment variables.",
    )
    p.add_argument("--customers", type=_arg(cs.positive_int, "an integer > 0"),
                   help="customers (SEED_CUSTOMERS)")
    p.add_argument("--days", type=_arg(cs.positive_int, "an integer > 0"), help="simulated days (SEED_DAYS)")
    p.add_argument("--rate", type=_arg(_rate, "events/s >= 0 or 'unthrottled'"),
                   help="events per second, 0 or 'unthrottled' for as fast as possible (SEED_RATE)")
    p.add_argument("--transport", type=_arg(cs.choice(*TRANSPORTS), "rest or kafka"),
                   help="rest (HTTP Proxy, default) or kafka (PUBLISH_TRANSPORT)")
    p.add_argument("--seed", type=_arg(cs.non_negative_int, "an integer >= 0"),
                   help="random seed; the same seed gives the same events (SEED_RANDOM_SEED)")
    p.add_argument("--start-date", type=_arg(iso_date, "a date YYYY-MM-DD"),
                   help="first simulated day, 00:00 UTC (SEED_START_DATE)")
    p.add_argument("--late-share", type=_arg(cs.fraction, "a fraction 0..1"),
                   help="share of records delivered late (SEED_LATE_SHARE)")
    p.add_argument("--late-max-minutes", type=_arg(positive_float, "minutes > 0"),
                   help="how late at most (SEED_LATE_MAX_MINUTES)")
    p.add_argument("--duplicate-share", type=_arg(cs.fraction, "a fraction 0..1"),
                   help="share of orders re-sent as duplicates (SEED_DUPLICATE_SHARE)")
    p.add_argument("--label-window-days", type=_arg(cs.positive_int, "an integer > 0"),
                   help="ground-truth label window after the cutoff (SEED_LABEL_WINDOW_DAYS)")
    p.add_argument("--ground-truth", metavar="PATH",
                   help="write hidden traits and labels as CSV (+ PATH stem .meta.json) (SEED_GROUND_TRUTH)")
    p.add_argument("--batch-size", type=_arg(cs.positive_int, "an integer > 0"),
                   help="records per HTTP Proxy request (PUBLISH_BATCH_SIZE)")
    p.add_argument("--dry-run", action="store_true", help="print sample events as JSON, publish nothing")
    p.add_argument("--sample", type=_arg(cs.non_negative_int, "an integer >= 0"), default=5,
                   help="how many events --dry-run prints (default 5)")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    p.err_stream = stderr
    return p


_OVERRIDES = {
    "customers": "customers", "days": "days", "rate": "rate", "transport": "transport", "seed": "seed",
    "start_date": "start_date", "late_share": "late_share", "late_max_minutes": "late_max_minutes",
    "duplicate_share": "duplicate_share", "label_window_days": "label_window_days",
    "ground_truth": "ground_truth_path", "batch_size": "batch_size",
}


def resolve_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> SeedSettings:
    settings = SeedSettings.from_env(environ)
    changes = {field: getattr(args, arg) for arg, field in _OVERRIDES.items()
               if getattr(args, arg) is not None}
    return dataclasses.replace(settings, **changes)


def _check_writable(path: str) -> None:
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"ground truth path {path} is a directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the directory for ground truth {path}: {exc.strerror}") from None
    if not os.access(target.parent, os.W_OK):
        raise ConfigError(f"ground truth directory {target.parent} is not writable")


def _event_json(event: Event) -> str:
    return json.dumps({"topic": event.topic.name, "key": event.key, "value": event.record}, sort_keys=False)


def _by_topic(chunk: list[Event]) -> list[tuple[Topic, list[tuple[str, Mapping[str, Any]]]]]:
    """Group a chunk per topic, profiles first (so a customer's profile tends to precede its orders)."""
    groups: dict[str, list[tuple[str, Mapping[str, Any]]]] = {t.name: [] for t in SOURCE_TOPICS}
    for event in chunk:
        groups[event.topic.name].append((event.key, event.record))
    return [(t, groups[t.name]) for t in SOURCE_TOPICS if groups[t.name]]


class Run:
    """One seed run; ``counts`` holds acknowledged records per topic."""

    def __init__(self, settings: SeedSettings, *, stderr: TextIO, stdout: TextIO, progress: bool = True,
                 publisher_factory: Callable[..., Publisher] = make_publisher):
        self.settings = settings
        self.config = SimConfig.from_settings(settings)
        self.simulator = Simulator(self.config)
        self.stderr = stderr
        self.stdout = stdout
        self.show_progress = progress
        self.publisher_factory = publisher_factory
        self.counts: Counter[str] = Counter()
        self.started = time.monotonic()

    @property
    def sent(self) -> int:
        return sum(self.counts.values())

    def _progress(self) -> Progress | None:
        return Progress(self.stderr) if self.show_progress else None

    def dry_run(self, sample: int) -> int:
        progress = self._progress()
        for n, event in enumerate(self.simulator.events()):
            if n < sample:
                print(_event_json(event), file=self.stdout)
            self.counts[event.topic.name] += 1
            if progress and n % 1000 == 0:
                progress.update(n, 0, self.simulator.progress)
        if progress:
            progress.finish(self.sent, 0, 1.0)
        self._write_truth()
        self._summary("dry run: simulated (nothing published)", 0)
        return EXIT_OK

    def publish(self) -> int:
        settings = self.settings
        publisher = self.publisher_factory(settings.publisher)
        stats = getattr(publisher, "stats", None)

        def errors() -> int:
            return (stats.retries + stats.failed) if stats is not None else 0

        progress = self._progress()
        throttle = Throttle(settings.rate)
        chunk_size = MAX_CHUNK if settings.rate <= 0 else max(1, min(MAX_CHUNK, int(settings.rate / 4)))
        chunk: list[Event] = []

        def send() -> None:
            for topic, records in _by_topic(chunk):
                try:
                    self.counts[topic.name] += publisher.publish(topic, records)
                except PublishError as exc:
                    self.counts[topic.name] += exc.acknowledged
                    raise
            chunk.clear()
            throttle.wait(self.sent)
            if progress:
                progress.update(self.sent, errors(), self.simulator.progress)

        try:
            for event in self.simulator.events():
                chunk.append(event)
                if len(chunk) >= chunk_size:
                    send()
            send()
        except PublishError as exc:
            # Nothing acknowledged (an unreachable or misconfigured dependency): the error is the only
            # line; otherwise the summary says how far the run got before it.
            if self.sent:
                if progress:
                    progress.finish(self.sent, errors(), self.simulator.progress)
                self._summary("stopped", errors())
            print(f"seed: error: {exc}", file=self.stderr)
            return EXIT_FAILED
        finally:
            try:
                publisher.close()
            except Exception as exc:  # closing must not hide the outcome
                log.debug("closing the publisher failed: %s", exc)
        if progress:
            progress.finish(self.sent, errors(), 1.0)
        self._write_truth()
        self._summary("sent", errors())
        return EXIT_OK

    def _write_truth(self) -> None:
        path = self.settings.ground_truth_path
        if path:
            write_ground_truth(path, self.simulator.ground_truth(), self.config)

    def _summary(self, verb: str, errors: int) -> None:
        elapsed = time.monotonic() - self.started
        per_topic = ", ".join(f"{t.name} {self.counts[t.name]}" for t in SOURCE_TOPICS)
        rate = self.sent / elapsed if elapsed > 0 else 0.0
        stats = self.simulator.stats
        text = (f"seed: {verb} {self.sent} events ({per_topic}) in {elapsed:.1f}s, {rate:,.1f} events/s, "
                f"{errors} errors; {self.config.customers} customers over {self.config.days} days, "
                f"seed {self.config.seed}, {stats['late']} late, {stats['duplicates']} duplicate orders")
        if self.settings.ground_truth_path and self.simulator.finished:
            text += (f"; ground truth {self.settings.ground_truth_path} "
                     f"(+ {sidecar_path(self.settings.ground_truth_path).name})")
        print(text, file=self.stderr)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    environ = os.environ if environ is None else environ
    parser = build_parser(stderr)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed as one line)
        return int(exc.code or 0)
    try:
        settings = resolve_settings(args, environ)
        if settings.ground_truth_path:
            _check_writable(settings.ground_truth_path)
    except ConfigError as exc:
        print(f"seed: error: {exc}", file=stderr)
        return EXIT_USAGE
    logs.configure(settings.log_level, settings.log_json)
    if settings.log_level != "DEBUG":  # one line per registry request otherwise
        for noisy in ("httpx", "httpx2", "httpcore", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # librdkafka logs every failed connection attempt; what matters ends up in the one-line error.
        logging.getLogger(KAFKA_LOGGER.name).setLevel(logging.CRITICAL)
    run = Run(settings, stderr=stderr, stdout=stdout, progress=not args.no_progress)
    try:
        return run.dry_run(args.sample) if args.dry_run else run.publish()
    except KeyboardInterrupt:
        print(f"seed: interrupted after {run.sent} acknowledged events", file=stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        print(f"seed: error: {' '.join(str(exc).split())}", file=stderr)
        return EXIT_FAILED
    except Exception as exc:  # never a traceback; the type and message say what broke
        log.debug("unexpected failure", exc_info=True)
        print(f"seed: error: {type(exc).__name__}: {' '.join(str(exc).split())}", file=stderr)
        return EXIT_FAILED
