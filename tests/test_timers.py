"""Durable timers (flask_notifications.workflows.timers): add, dedup, cancel,
the leased claim (SQLite and PostgreSQL), retries with backoff, dead letters
and their replay by a real Celery worker."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest

from flask_notifications import Notifications, NotificationsUnavailable, reliability
from flask_notifications._state import get_state
from flask_notifications.workflows import timers

from .conftest import wait_for

RUNS: list[tuple[str, dict]] = []
_lock = threading.Lock()


@timers.handler("tests.record")
def _record(extension, payload):
    assert isinstance(extension, Notifications)
    with _lock:
        RUNS.append(("tests.record", payload))
    time.sleep(payload.get("sleep", 0))


@timers.handler("tests.fail")
def _fail(extension, payload):
    with _lock:
        RUNS.append(("tests.fail", payload))
    if _fails(payload["name"]) < payload["until"]:  # fails until its run number `until`
        raise RuntimeError("handler down")


@pytest.fixture(autouse=True)
def _clear_runs():
    RUNS.clear()
    yield
    RUNS.clear()


@pytest.fixture
def timer_app(make_app, database_uri):
    app = make_app(
        NOTIFICATIONS_DATABASE_URI=database_uri,
        NOTIFICATIONS_TIMER_RETRY_BACKOFF=0.05,
        NOTIFICATIONS_TIMER_MAX_ATTEMPTS=3,
    )
    notifications = Notifications(app)
    yield app
    notifications.shutdown()
    engine = get_state(app).engine
    if engine is not None:
        engine.dispose()


def test_add_dedups_by_key_and_pending_lists_soonest_first(timer_app):
    with timer_app.app_context():
        now = time.time()
        assert timers.add("tests.record", "b", now + 60, {"n": 2}) is True
        assert timers.add("tests.record", "a", now + 30, {"n": 1}) is True
        assert timers.add("tests.record", "a", now + 1, {"n": 99}) is False  # kept as it was
        listed = timers.pending()
        assert [t["key"] for t in listed] == ["a", "b"]
        assert listed[0]["payload"] == {"n": 1} and listed[0]["due_at"] == pytest.approx(now + 30)
        assert listed[0]["running"] is False and listed[0]["attempts"] == 0
        assert timers.pending(kind="other") == []


def test_bad_arguments_are_value_errors(timer_app):
    with timer_app.app_context():
        with pytest.raises(ValueError, match="timer key"):
            timers.add("tests.record", "", time.time(), {})
        with pytest.raises(ValueError, match="timer key"):
            timers.add("tests.record", "k" * 257, time.time(), {})
        with pytest.raises(ValueError, match="kind"):
            timers.add("k" * 33, "key", time.time(), {})
        with pytest.raises(ValueError, match="due_at"):
            timers.add("tests.record", "key", "soon", {})  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="JSON"):
            timers.add("tests.record", "key", time.time(), {"x": object()})
        assert timers.pending() == []
    with pytest.raises(ValueError, match="already handled"):
        timers.handler("tests.record")(lambda extension, payload: None)


def test_make_key_hashes_long_keys():
    assert timers.make_key("send", "abc") == "send:abc"
    long = timers.make_key("send", "x" * 300)
    assert len(long) <= timers.MAX_KEY_LENGTH and long.startswith("send:#")
    assert long == timers.make_key("send", "x" * 300) != timers.make_key("send", "y" * 300)


def test_sweep_runs_due_timers_once_and_deletes_them(timer_app):
    with timer_app.app_context():
        now = time.time()
        timers.add("tests.record", "due", now - 1, {"n": 1})
        timers.add("tests.record", "later", now + 3600, {"n": 2})
    wait = timers.sweep(timer_app)
    assert RUNS == [("tests.record", {"n": 1})]
    assert 0 <= wait <= timer_app.config["NOTIFICATIONS_TIMER_POLL"]
    timers.sweep(timer_app)
    assert len(RUNS) == 1
    with timer_app.app_context():
        assert [t["key"] for t in timers.pending()] == ["later"]


def test_sweep_returns_the_time_until_the_next_timer(timer_app):
    timer_app.config["NOTIFICATIONS_TIMER_POLL"] = 5.0
    with timer_app.app_context():
        timers.add("tests.record", "soon", time.time() + 2, {})
    assert 1.0 < timers.sweep(timer_app) <= 2.0
    timer_app.config["NOTIFICATIONS_TIMER_POLL"] = 0.5
    assert timers.sweep(timer_app) == pytest.approx(0.5, abs=0.01)


def test_cancel_removes_a_waiting_timer_but_not_a_claimed_one(timer_app):
    with timer_app.app_context():
        timers.add("tests.record", "waiting", time.time() + 60, {})
        assert timers.cancel("waiting") is True
        assert timers.cancel("waiting") is False
        assert timers.cancel("unknown") is False
        assert timers.pending() == []
        timers.add("tests.record", "held", time.time() - 1, {"sleep": 1.0})
    sweeper = threading.Thread(target=timers.sweep, args=(timer_app,))
    sweeper.start()
    try:
        wait_for(lambda: RUNS)  # the handler runs: the timer is held
        with timer_app.app_context():
            assert timers.pending()[0]["running"] is True
            assert timers.cancel("held") is False
    finally:
        sweeper.join()
    with timer_app.app_context():
        assert timers.pending() == []


def test_two_sweepers_never_run_one_timer_twice(timer_app):
    count = 150
    with timer_app.app_context():
        now = time.time()
        for n in range(count):
            timers.add("tests.record", f"t{n}", now - 1, {"n": n, "sleep": 0.002})
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                timers.sweep(timer_app)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=loop) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(RUNS) >= count or errors, 60)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    seen = Counter(payload["n"] for _, payload in RUNS)
    assert len(seen) == count and set(seen.values()) == {1}
    with timer_app.app_context():
        assert timers.pending() == []


def test_a_failing_handler_is_retried_with_backoff(timer_app):
    with timer_app.app_context():
        timers.add("tests.fail", "flaky", time.time() - 1, {"name": "flaky", "until": 3})
    timers.sweep(timer_app)
    with timer_app.app_context():
        (row,) = timers.pending()
        assert row["attempts"] == 1 and row["running"] is False
        assert row["due_at"] > time.time() - 0.01  # postponed by the backoff
    wait_for(lambda: timers.sweep(timer_app) is not None and _fails("flaky") >= 3, 10)
    with timer_app.app_context():
        assert timers.pending() == []
        assert reliability.dead_letters() == []  # the third (last allowed) run worked
    assert _fails("flaky") == 3


def test_cancel_removes_a_timer_waiting_for_its_retry(timer_app):
    with timer_app.app_context():
        timers.add("tests.fail", "retrying", time.time() - 1, {"name": "retrying", "until": 9})
    timers.sweep(timer_app)
    with timer_app.app_context():
        assert timers.pending()[0]["attempts"] == 1
        assert timers.cancel("retrying") is True
        assert timers.pending() == []


def _fails(name: str) -> int:
    return sum(1 for kind, payload in RUNS if kind == "tests.fail" and payload["name"] == name)


def test_after_the_last_attempt_a_timer_is_a_dead_letter_and_replay_runs_it(timer_app, worker):
    with timer_app.app_context():
        payload = {"name": "doomed", "until": 4, "event_id": "ev-9"}
        timers.add("tests.fail", "doomed", time.time() - 1, payload)
    wait_for(lambda: timers.sweep(timer_app) is not None and _fails("doomed") >= 3, 10)
    with timer_app.app_context():
        assert timers.pending() == []
        (letter,) = reliability.dead_letters()
        assert letter["task"] == timers.TIMER_TASK and letter["hub_id"] == "tests.fail"
        assert "handler down" in letter["error"]
        kept = json.loads(letter["event"])
        assert kept["key"] == "doomed" and kept["event_id"] == "ev-9"
        assert kept["payload"] == payload
        with worker(timer_app):
            assert reliability.replay_dead_letters() == 1
            wait_for(lambda: _fails("doomed") >= 4, 15)  # the fourth run succeeds
        assert reliability.dead_letters() == []


def test_a_timer_of_an_unknown_kind_fails_like_a_handler_error(timer_app):
    with timer_app.app_context():
        timers.add("tests.nobody", "orphan", time.time() - 1, {})
    timers.sweep(timer_app)
    with timer_app.app_context():
        (row,) = timers.pending()
        assert row["attempts"] == 1


def test_a_worker_creates_no_database_for_an_app_without_one(make_app, tmp_path):
    app = make_app()  # no NOTIFICATIONS_DATABASE_URI, no Flask-SQLAlchemy
    Notifications(app)
    default = tmp_path / "instance" / "notifications.sqlite"
    assert timers.sweep(app) == app.config["NOTIFICATIONS_TIMER_POLL"]
    assert not default.exists()
    with app.app_context():
        timers.add("tests.record", "first", time.time() - 1, {"n": 7})  # creates it
    assert default.exists()
    timers.sweep(app)
    assert RUNS == [("tests.record", {"n": 7})]
    get_state(app).engine.dispose()


DOWN = threading.Event()


@timers.handler("tests.down")
def _down(extension, payload):
    with _lock:
        RUNS.append(("tests.down", payload))
    if DOWN.is_set():
        raise NotificationsUnavailable("Redis is down")


def test_an_outage_postpones_the_batch_without_counting_attempts(timer_app):
    DOWN.set()
    try:
        with timer_app.app_context():
            for n in range(3):
                timers.add("tests.down", f"down{n}", time.time() - 1, {"n": n})
        for sweeps in range(1, 6):  # more than NOTIFICATIONS_TIMER_MAX_ATTEMPTS (3)
            wait_for(lambda s=sweeps: timers.sweep(timer_app) is not None and len(RUNS) >= s, 5)
            with timer_app.app_context():
                pending = timers.pending()
            assert len(RUNS) == sweeps  # one try per sweep: the rest of the batch waits
            assert [t["attempts"] for t in pending] == [0, 0, 0]
    finally:
        DOWN.clear()
    wait_for(lambda: timers.sweep(timer_app) is not None and len(RUNS) >= 8, 5)
    with timer_app.app_context():
        assert timers.pending() == [] and reliability.dead_letters() == []
    assert sorted(p["n"] for kind, p in RUNS[5:]) == [0, 1, 2]
