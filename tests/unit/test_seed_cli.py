from __future__ import annotations

import io
import json
import logging

import pytest

from schemas import topics
from seed import cli
from seed.progress import Progress, Throttle
from seed.publish import PublishError
from seed.settings import SeedSettings

# Endpoints nobody listens on: a test that reached them would fail.
NOWHERE = {"REST_PROXY_URL": "http://127.0.0.1:9", "SCHEMA_REGISTRY_URL": "http://127.0.0.1:9",
           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "PUBLISH_MAX_RETRIES": "0"}


def run_main(argv, environ=None):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, {**NOWHERE, **(environ or {})}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv", [["--customers", "0"], ["--rate", "fast"], ["--transport", "grpc"],
                                  ["--late-share", "2"], ["--start-date", "2026-13-01"], ["--bogus"]])
def test_invalid_option_is_one_line_and_exit_2(argv):
    code, out, err = run_main(argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("seed: error: ")
    assert "Traceback" not in err


def test_invalid_environment_names_the_variable_and_exits_2():
    code, _, err = run_main(["--dry-run"], {"SEED_DUPLICATE_SHARE": "lots"})
    assert code == 2 and "SEED_DUPLICATE_SHARE" in err and err.count("\n") == 1


def test_help_exits_0(capsys):
    code, _, _ = run_main(["--help"])
    assert code == 0
    assert "--dry-run" in capsys.readouterr().out


def test_dry_run_prints_samples_as_json_and_writes_ground_truth(tmp_path):
    truth = tmp_path / "gt" / "truth.csv"
    code, out, err = run_main(["--dry-run", "--customers", "30", "--days", "5", "--sample", "4",
                               "--ground-truth", str(truth), "--no-progress"])
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 4
    assert all(set(line) == {"topic", "key", "value"} for line in lines)
    assert lines[0]["topic"] == topics.CUSTOMER_PROFILE.name
    assert lines[0]["key"] == lines[0]["value"]["customer_id"]
    assert truth.exists() and (tmp_path / "gt" / "truth.meta.json").exists()
    assert "dry run" in err and "30 customers" in err


def test_options_override_the_environment():
    argv = ["--customers", "7", "--transport", "kafka", "--rate", "unthrottled"]
    args = cli.build_parser().parse_args(argv)
    got = cli.resolve_settings(args, {"SEED_CUSTOMERS": "99", "SEED_DAYS": "3", "SEED_RATE": "10"})
    assert (got.customers, got.days, got.transport, got.rate) == (7, 3, "kafka", 0.0)
    assert got.publisher.transport == "kafka"


def test_unwritable_ground_truth_is_a_usage_error(tmp_path):
    (tmp_path / "dir").mkdir()
    code, _, err = run_main(["--dry-run", "--customers", "1", "--ground-truth", str(tmp_path / "dir")])
    assert code == 2 and "is a directory" in err


class FakePublisher:
    def __init__(self, fail_on_call: int | None = None):
        self.received: dict[str, list] = {}
        self.calls = 0
        self.fail_on_call = fail_on_call
        self.closed = False

    def publish(self, topic, records):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise PublishError("HTTP proxy http://p", topic.name, "HTTP 404, topic does not exist",
                               acknowledged=1)
        self.received.setdefault(topic.name, []).extend(records)
        return len(records)

    def close(self):
        self.closed = True


def _run(settings, publisher):
    err = io.StringIO()
    run = cli.Run(settings, stderr=err, stdout=io.StringIO(), progress=False,
                  publisher_factory=lambda _s: publisher)
    return run, run.publish(), err.getvalue()


def test_publish_sends_every_simulated_event_and_counts_acks(tmp_path):
    settings = SeedSettings(customers=40, days=10, ground_truth_path=str(tmp_path / "t.csv"))
    publisher = FakePublisher()
    run, code, err = _run(settings, publisher)
    assert code == 0 and publisher.closed
    expected = list(run.simulator.events())
    assert run.sent == len(expected) == sum(len(v) for v in publisher.received.values())
    assert publisher.received[topics.ORDER_PLACED.name] == [
        (e.key, e.record) for e in expected if e.topic is topics.ORDER_PLACED]
    assert (tmp_path / "t.csv").exists()
    assert f"sent {len(expected)} events" in err


def test_publish_failure_exits_1_with_one_line_and_counts_only_acks():
    publisher = FakePublisher(fail_on_call=2)
    run, code, err = _run(SeedSettings(customers=40, days=10), publisher)
    assert code == 1 and publisher.closed
    assert run.sent == len(publisher.received[topics.CUSTOMER_PROFILE.name]) + 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("seed: error: publish to dom.order.placed.v1 via HTTP proxy http://p failed")


def test_rate_limits_chunks():
    settings = SeedSettings(customers=20, days=5, rate=1e9)
    run, code, _ = _run(settings, FakePublisher())
    assert code == 0 and run.sent > 0


def test_unreachable_proxy_via_main_is_exit_1_and_the_only_line():
    code, _, err = run_main(["--customers", "2", "--days", "1"])
    assert code == 1 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("seed: error: ")
    assert "HTTP proxy http://127.0.0.1:9 (REST_PROXY_URL)" in err and "cannot connect" in err


def test_failure_after_acknowledged_events_keeps_the_summary_then_the_error():
    publisher = FakePublisher(fail_on_call=2)
    _, code, err = _run(SeedSettings(customers=40, days=10), publisher)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 2
    assert lines[0].startswith("seed: stopped") and lines[1].startswith("seed: error: ")


class RefusingPublisher(FakePublisher):
    def publish(self, topic, records):
        raise PublishError("HTTP proxy http://p (REST_PROXY_URL)", topic.name, "cannot connect (refused)")


def test_failure_before_any_ack_is_only_the_error_line():
    publisher = RefusingPublisher()
    run, code, err = _run(SeedSettings(customers=40, days=10), publisher)
    assert code == 1 and run.sent == 0 and publisher.closed
    assert err.count("\n") == 1 and err.startswith("seed: error: publish to dom.customer.profile.upsert.v1")


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.slept.append(s)
        self.now += s


def test_throttle_paces_to_the_rate():
    clock = FakeClock()
    throttle = Throttle(10.0, clock=clock, sleep=clock.sleep)
    throttle.wait(5)
    assert clock.slept == [0.5]
    clock.now += 2.0
    assert throttle.wait(10) == 0.0  # behind schedule: no sleep
    assert Throttle(0, clock=clock, sleep=clock.sleep).wait(10**6) == 0.0


def test_progress_redraws_on_a_tty_and_logs_otherwise(caplog):
    clock = FakeClock()
    tty = io.StringIO()
    bar = Progress(tty, tty=True, clock=clock)
    clock.now += 2
    bar.update(200, 1, 0.5)
    bar.update(300, 1, 0.6)  # within the redraw interval: skipped
    bar.finish(400, 2, 1.0)
    frames = tty.getvalue().split("\r")[1:]
    assert len(frames) == 2
    assert "200 events sent" in frames[0] and "100.0 events/s" in frames[0] and "1 errors" in frames[0]
    assert "[########################] 100%" in frames[1] and frames[1].endswith("\n")
    plain = io.StringIO()
    logged = Progress(plain, tty=False, clock=clock, log_every_s=5)
    with caplog.at_level(logging.INFO, logger="seed"):
        logged.update(1, 0, 0.1)  # first call only starts the clock
        clock.now += 6
        logged.update(60, 0, 0.2)
        logged.update(61, 0, 0.2)
    assert plain.getvalue() == ""
    assert [r.getMessage() for r in caplog.records] == [
        "progress: 20% of simulated time, 60 events sent, 10.0 events/s, 0 errors"]
