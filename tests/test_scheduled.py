"""Scheduled sends: ``send(event, at=...)`` / ``delay=...``, ``cancel()``,
deduplication, expiration and ``flask notifications scheduled``, with a real
Redis, a real Celery worker and the workers' timer sweeper on an SQLite inbox."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from flask_notifications import (
    Event,
    InvalidEventError,
    InvalidQueryError,
    InvalidScheduleError,
    Notifications,
)
from flask_notifications._state import get_state
from flask_notifications.workflows import scheduled, timers

from .conftest import wait_for


class Recorder:
    """A consumer that notes each event id with the time it ran."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float]] = []
        self.lock = threading.Lock()

    def __call__(self, event, *args, **kwargs):
        with self.lock:
            self.seen.append((event["event_id"], time.time()))

    def ids(self) -> list[str]:
        with self.lock:
            return [event_id for event_id, _ in self.seen]

    def at(self, event_id: str) -> float:
        return next(t for e, t in self.seen if e == event_id)


@pytest.fixture
def setup(make_app, tmp_path):
    app = make_app(NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'inbox.sqlite'}")
    notifications = Notifications(app)
    recorder = Recorder()
    notifications.create_hub("Later").register_consumer(
        recorder, celery_task_name="tests.scheduled.record"
    )
    yield app, notifications, recorder
    engine = get_state(app).engine
    if engine is not None:
        engine.dispose()


@pytest.fixture
def running(setup, worker, timer_sweeper):
    app, notifications, recorder = setup
    with app.app_context(), worker(app), timer_sweeper(app):
        yield notifications, recorder


def ev(event_id=None, title="Call Bob", **kw):
    return Event(event_id, "reminder", title, "at noon", recipients=["7"], **kw)


def in_(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_at_delivers_when_due_not_before(running):
    notifications, recorder = running
    due = in_(2.0)
    sent = notifications.send(ev(), at=due)
    assert recorder.ids() == []  # not now
    (item,) = scheduled.scheduled()
    assert item["event_id"] == sent["event_id"] and item["due_at"] == pytest.approx(due.timestamp())
    assert item["due"].tzinfo is UTC and item["recipients"] == ["7"]
    wait_for(lambda: recorder.ids(), 10)
    assert recorder.ids() == [sent["event_id"]]
    assert recorder.at(sent["event_id"]) >= due.timestamp()
    wait_for(lambda: scheduled.scheduled() == [], 5)  # deleted once its handler ran


def test_delay_delivers_after_the_delay_once(running):
    notifications, recorder = running
    start = time.time()
    sent = notifications.send(ev(), delay=timedelta(seconds=1))
    wait_for(lambda: recorder.ids(), 10)
    marker = notifications.send(ev(), delay=timedelta(seconds=0.5))  # a later sweep's work
    wait_for(lambda: marker["event_id"] in recorder.ids(), 10)
    assert recorder.ids() == [sent["event_id"], marker["event_id"]]
    assert recorder.at(sent["event_id"]) >= start + 1


def test_a_past_time_sends_now_without_a_timer(setup, worker):
    app, notifications, recorder = setup
    with app.app_context(), worker(app):  # no timer sweeper: only an immediate send arrives
        sent = notifications.send(ev(), at=in_(-60))
        assert timers.pending() == []
        wait_for(lambda: recorder.ids(), 10)
        zero = notifications.send(ev(), delay=timedelta(0))
        wait_for(lambda: zero["event_id"] in recorder.ids(), 10)
    assert recorder.ids() == [sent["event_id"], zero["event_id"]]


def test_bad_schedules_are_clear_errors_and_schedule_nothing(setup):
    app, notifications, _ = setup
    with app.app_context():
        with pytest.raises(InvalidScheduleError, match="not both"):
            notifications.send(ev(), at=in_(5), delay=timedelta(seconds=5))
        with pytest.raises(InvalidScheduleError, match="naive"):
            notifications.send(ev(), at=datetime.now() + timedelta(seconds=5))
        with pytest.raises(InvalidScheduleError, match="datetime"):
            notifications.send(ev(), at="2030-01-01T00:00:00Z")  # type: ignore[arg-type]
        with pytest.raises(InvalidScheduleError, match="timedelta"):
            notifications.send(ev(), delay=5)  # type: ignore[arg-type]
        with pytest.raises(InvalidEventError, match="title"):
            notifications.send({"event_type": "x", "title": 1, "body": ""}, delay=timedelta(1))
        assert isinstance(InvalidScheduleError("x"), ValueError)
        assert timers.pending() == []


def test_scheduling_an_id_twice_or_an_id_already_sent_delivers_once(running):
    notifications, recorder = running
    before = time.time()
    twice = notifications.send(ev("twice"), delay=timedelta(seconds=2))
    after = time.time()
    notifications.send(ev("twice", title="changed"), delay=timedelta(seconds=0.2))
    (timer,) = timers.pending()
    assert before + 2 <= timer["due_at"] <= after + 2  # the first schedule is kept
    assert json.loads(timer["payload"]["event"])["title"] == "Call Bob"
    notifications.send(ev("sent"))
    wait_for(lambda: "sent" in recorder.ids(), 10)
    notifications.send(ev("sent"), delay=timedelta(seconds=0.2))
    assert "send:sent" not in [t["key"] for t in timers.pending()]  # not scheduled
    # Sent by other means before it is due: not sent again when due.
    notifications.send(ev("early"), delay=timedelta(seconds=0.5))
    notifications.send(ev("early"))
    wait_for(lambda: "twice" in recorder.ids(), 10)
    marker = notifications.send(ev(), delay=timedelta(seconds=0.5))
    wait_for(lambda: marker["event_id"] in recorder.ids(), 10)
    assert sorted(recorder.ids()) == sorted(
        ["sent", "early", twice["event_id"], marker["event_id"]]
    )
    wait_for(lambda: timers.pending() == [], 5)


def test_cancel_before_it_goes_and_after(running):
    notifications, recorder = running
    doomed = notifications.send(ev(), delay=timedelta(seconds=2))
    assert notifications.cancel(doomed["event_id"]) is True
    assert notifications.cancel(doomed["event_id"]) is False  # nothing left to cancel
    kept = notifications.send(ev(), delay=timedelta(seconds=2.5))
    wait_for(lambda: recorder.ids(), 10)
    assert recorder.ids() == [kept["event_id"]]  # due after the cancelled one: it never went
    assert notifications.cancel(kept["event_id"]) is False  # already sent
    assert notifications.cancel("never-scheduled") is False
    with pytest.raises(InvalidQueryError):
        notifications.cancel(None)  # type: ignore[arg-type]


def test_an_event_expiring_before_its_delivery_time_sends_nothing(running, caplog):
    notifications, recorder = running
    caplog.set_level(logging.INFO, logger="flask_notifications")
    expiring = ev(expiration_datetime=in_(0.5))
    notifications.send(expiring, delay=timedelta(seconds=1))
    assert timers.pending() == []
    assert f"event {expiring['event_id']} expires before its delivery time" in caplog.text
    marker = notifications.send(ev(), delay=timedelta(seconds=1.2))
    wait_for(lambda: recorder.ids(), 10)
    assert recorder.ids() == [marker["event_id"]]


def test_an_event_expired_when_due_is_not_sent(setup, caplog):
    app, notifications, recorder = setup
    caplog.set_level(logging.INFO, logger="flask_notifications")
    with app.app_context():
        event = ev(expiration_datetime=in_(0.3))
        timers.add("send", "send:late", time.time() - 1, {"event": event.to_json()})
        wait_for(lambda: event.is_expired(), 5)
    timers.sweep(app)  # the handler runs in this process: nothing is enqueued
    with app.app_context():
        assert timers.pending() == []
    assert "expired before it was due; not sent" in caplog.text


def test_the_scheduled_command_lists_pending_sends(setup):
    app, notifications, _ = setup
    runner = app.test_cli_runner()
    with app.app_context():
        first = notifications.send(ev("one"), at=datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC))
        notifications.send(
            Event("two", "digest", "t", "b"), at=datetime(2098, 5, 6, 7, 8, 9, tzinfo=UTC)
        )
    result = runner.invoke(args=["notifications", "scheduled"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines == [
        "two  2098-05-06 07:08:09 UTC  digest  to=(broadcast)",
        f"{first['event_id']}  2099-01-02 03:04:05 UTC  reminder  to=7",
        "2 scheduled send(s)",
    ]
    with app.app_context():
        assert notifications.cancel("two") is True
    result = runner.invoke(args=["notifications", "scheduled"])
    assert result.output.splitlines()[-1] == "1 scheduled send(s)"
