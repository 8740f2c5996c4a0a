"""Digests on the user's clock (issue 17): the schedule (a pure function tested
across daylight-saving changes), the settings, and the e-mail consumer holding
events for a durable timer: with a real worker, Redis, SMTP server and SQLite,
once across a worker killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy
from flask import request

from flask_notifications import Event, InvalidQueryError, Notifications
from flask_notifications._state import get_state
from flask_notifications.consumers import FlaskEmailConsumer, _digest
from flask_notifications.inbox.digests import DigestSchedule, next_digest_at
from flask_notifications.inbox.models import digest_items
from flask_notifications.workflows import timers

from .conftest import wait_for, worker_process

PARIS = "Europe/Paris"


def utc(*args):
    return datetime(*args, tzinfo=UTC)


# -- when a digest is due: a pure function ---------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "after", "due"),
    [
        # An ordinary day in Paris (UTC+1 in winter, +2 in summer).
        (DigestSchedule("daily", 8, 0, PARIS), utc(2026, 1, 14, 12), utc(2026, 1, 15, 7)),
        (DigestSchedule("daily", 8, 0, PARIS), utc(2026, 1, 15, 6, 59), utc(2026, 1, 15, 7)),
        # Strictly after: at the due instant, the next one is the next day's.
        (DigestSchedule("daily", 8, 0, PARIS), utc(2026, 1, 15, 7), utc(2026, 1, 16, 7)),
        # Spring forward (Sunday 29 March 2026, 02:00 -> 03:00): 08:00 is an
        # hour earlier in UTC than the day before.
        (DigestSchedule("daily", 8, 0, PARIS), utc(2026, 3, 28, 5), utc(2026, 3, 28, 7)),
        (DigestSchedule("daily", 8, 0, PARIS), utc(2026, 3, 28, 12), utc(2026, 3, 29, 6)),
        # 02:00 does not exist that day: it goes out when the clock jumps (03:00 CEST).
        (DigestSchedule("daily", 2, 0, PARIS), utc(2026, 3, 28, 12), utc(2026, 3, 29, 1)),
        (DigestSchedule("daily", 2, 0, PARIS), utc(2026, 3, 29, 1), utc(2026, 3, 30, 0)),
        # Fall back (Sunday 25 October 2026, 03:00 -> 02:00): 08:00 is an hour later in UTC.
        (DigestSchedule("daily", 8, 0, PARIS), utc(2026, 10, 24, 12), utc(2026, 10, 25, 7)),
        (DigestSchedule("daily", 8, 0, PARIS), utc(2026, 10, 25, 7), utc(2026, 10, 26, 7)),
        # 02:00 happens twice that day: the first only, then the next day's.
        (DigestSchedule("daily", 2, 0, PARIS), utc(2026, 10, 24, 12), utc(2026, 10, 25, 0)),
        (DigestSchedule("daily", 2, 0, PARIS), utc(2026, 10, 25, 0), utc(2026, 10, 26, 1)),
        # New York: spring forward on 8 March 2026, fall back on 1 November 2026.
        (
            DigestSchedule("daily", 2, 0, "America/New_York"),
            utc(2026, 3, 7, 12),
            utc(2026, 3, 8, 7),
        ),
        (
            DigestSchedule("daily", 9, 0, "America/New_York"),
            utc(2026, 11, 1, 0),
            utc(2026, 11, 1, 14),
        ),
        # Weekly: Monday 08:00 in Paris, across the spring change.
        (DigestSchedule("weekly", 8, 0, PARIS), utc(2026, 3, 27, 12), utc(2026, 3, 30, 6)),
        (DigestSchedule("weekly", 8, 0, PARIS), utc(2026, 3, 23, 7), utc(2026, 3, 30, 6)),
        (DigestSchedule("weekly", 18, 6, PARIS), utc(2026, 10, 20, 0), utc(2026, 10, 25, 17)),
        # Hourly: every real hour, including the repeated one in the autumn.
        (DigestSchedule("hourly", timezone=PARIS), utc(2026, 10, 25, 0, 10), utc(2026, 10, 25, 1)),
        (DigestSchedule("hourly", timezone=PARIS), utc(2026, 10, 25, 1), utc(2026, 10, 25, 2)),
        (DigestSchedule("hourly", timezone=PARIS), utc(2026, 3, 29, 0, 59), utc(2026, 3, 29, 1)),
        # A half-hour offset: the local full hour is half past in UTC.
        (
            DigestSchedule("hourly", timezone="Asia/Kolkata"),
            utc(2026, 1, 1, 0, 10),
            utc(2026, 1, 1, 0, 30),
        ),
        (DigestSchedule("daily", 8, 0, "Asia/Kolkata"), utc(2026, 1, 1), utc(2026, 1, 1, 2, 30)),
    ],
)
def test_next_digest_at(schedule, after, due):
    assert next_digest_at(schedule, after) == due
    assert schedule.next_after(after.timestamp()) == due.timestamp()


def test_the_due_time_is_the_local_hour_on_every_day_of_a_year():
    schedule = DigestSchedule("daily", 8, 0, PARIS)
    instant = utc(2026, 1, 1)
    for _ in range(366):
        due = next_digest_at(schedule, instant)
        local = due.astimezone(schedule_zone(schedule))
        assert (local.hour, local.minute) == (8, 0)
        if instant > utc(2026, 1, 1):
            assert timedelta(hours=23) <= due - instant <= timedelta(hours=25)
        instant = due


def schedule_zone(schedule):
    from zoneinfo import ZoneInfo

    return ZoneInfo(schedule.timezone)


# -- the settings ------------------------------------------------------------------------------


@pytest.fixture
def prefs_app(make_app, tmp_path):
    app = make_app(NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'db.sqlite'}")
    notifications = Notifications(app)
    notifications.identity_loader(lambda: request.headers.get("X-User"))
    with app.app_context():
        yield app, notifications
        notifications.shutdown()


def test_set_digest_and_get(prefs_app):
    _, notifications = prefs_app
    prefs = notifications.preferences
    prefs.set_digest("alice", "email", "daily", hour=8, timezone=PARIS)
    assert prefs.get("alice")["channels"]["email"]["digest"] == {
        "frequency": "daily",
        "hour": 8,
        "weekday": 0,
        "timezone": PARIS,
    }
    assert "digest" not in prefs.get("alice")["channels"]["inbox"]
    assert prefs.digests(["alice", "bob"], "email") == {
        "alice": DigestSchedule("daily", 8, 0, PARIS)
    }
    prefs.set_digest("alice", "email", "weekly", hour=18, weekday=4, timezone="UTC")
    assert prefs.digests(["alice"], "email")["alice"] == DigestSchedule("weekly", 18, 4, "UTC")
    prefs.set_digest("alice", "email", None)
    assert prefs.get("alice")["channels"]["email"]["digest"] is None
    assert prefs.digests(["alice"], "email") == {}


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("inbox", "daily"), {}, "digests exist for the email channel only"),
        (("sms", "daily"), {}, "channel must be one of"),
        (("email", "monthly"), {}, "frequency must be one of hourly, daily, weekly"),
        (("email", "daily"), {"hour": 24}, "hour must be an integer from 0 to 23"),
        (("email", "daily"), {"hour": True}, "hour must be an integer"),
        (("email", "daily"), {"hour": 8.5}, "hour must be an integer"),
        (("email", "weekly"), {"weekday": 7}, "weekday must be an integer from 0 to 6"),
        (("email", "daily"), {"timezone": "Mars/Olympus"}, "not a known time zone"),
        (("email", "daily"), {"timezone": "../../etc/passwd"}, "timezone must be an IANA"),
        (("email", "daily"), {"timezone": ""}, "timezone must be an IANA"),
        (("email", "daily"), {"timezone": "Europe"}, "not a known time zone"),
    ],
)
def test_bad_digest_settings_are_clear_errors(prefs_app, args, kwargs, message):
    _, notifications = prefs_app
    with pytest.raises(InvalidQueryError, match=message):
        notifications.preferences.set_digest("alice", *args, **kwargs)
    assert notifications.preferences.digests(["alice"], "email") == {}


def test_http_put_sets_and_removes_a_digest(prefs_app):
    app, notifications = prefs_app
    client = app.test_client()
    headers = {"X-User": "alice"}
    weekly = {"frequency": "weekly", "hour": 9, "weekday": 4, "timezone": "America/New_York"}
    answer = client.put(
        "/notifications/preferences",
        json={"channels": {"email": {"digest": weekly}}},
        headers=headers,
    )
    assert answer.status_code == 200
    assert answer.get_json()["channels"]["email"]["digest"] == weekly
    for body, message in [
        ({"email": {"digest": {"frequency": "daily", "timezone": "Nowhere"}}}, "time zone"),
        ({"email": {"digest": {"frequency": "daily", "minute": 5}}}, "unknown key 'minute'"),
        ({"email": {"digest": "daily"}}, "channels.email.digest must be a JSON object"),
        ({"inbox": {"digest": None}}, "channels.inbox: unknown key 'digest'"),
    ]:
        answer = client.put("/notifications/preferences", json={"channels": body}, headers=headers)
        assert answer.status_code == 400 and message in answer.get_json()["error"]
    assert notifications.preferences.get("alice")["channels"]["email"]["digest"] == weekly
    answer = client.put(
        "/notifications/preferences",
        json={"channels": {"email": {"digest": None}}},
        headers=headers,
    )
    assert answer.get_json()["channels"]["email"]["digest"] is None


# -- held and sent, with a real worker -----------------------------------------------------------


@pytest.fixture
def mail_app(make_app, database_uri, smtp_server):
    server = smtp_server()
    app = make_app(
        NOTIFICATIONS_DATABASE_URI=database_uri,
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=server.port,
        NOTIFICATIONS_TIMER_RETRY_BACKOFF=0,
    )
    notifications = Notifications(app)
    notifications.email_resolver(lambda user: f"{user}@example.org")
    consumer = FlaskEmailConsumer.from_app(app, sender="noreply@example.com")
    notifications.create_hub("Mail").register_consumer(consumer)
    with app.app_context():
        notifications.inbox.create_tables()
        yield app, notifications, consumer, server
        notifications.shutdown()
        get_state(app).engine.dispose()


def held(app):
    with get_state(app).engine.connect() as conn:
        return conn.execute(
            sqlalchemy.select(digest_items.c.recipient, digest_items.c.event_id)
        ).all()


def message(title, recipients, category=None):
    fields = {"category": category} if category else {}
    return Event(None, "message", title, f"About {title}", recipients=recipients, **fields)


def bring_forward(seconds):
    """Re-add the digest's timer ``seconds`` from now (instead of waiting for
    the local hour): the same timer, through the timers' public API."""
    (timer,) = timers.pending(_digest.KIND)
    assert timers.cancel(timer["key"]) is True
    assert timers.add(_digest.KIND, timer["key"] + ":soon", time.time() + seconds, timer["payload"])
    return timer


def test_a_users_digest_holds_mail_until_the_local_hour(mail_app, worker, timer_sweeper):
    app, notifications, _, server = mail_app
    schedule = DigestSchedule("daily", 8, 0, PARIS)
    notifications.preferences.set_digest("alice", "email", "daily", hour=8, timezone=PARIS)
    everyone = ["alice", "bob"]
    started = time.time()
    first = message("First", everyone, "comments")
    with worker(app), timer_sweeper(app):
        notifications.send(first)
        notifications.send(message("Second", everyone))
        notifications.send(message("Sign-in from a new device", everyone, "security"))
        # Bob has no digest: three mails. Alice: the critical one, at once.
        wait_for(lambda: len(server.to("bob@example.org")) == 3, 15)
        wait_for(lambda: len(held(app)) == 2, 15)
        wait_for(lambda: len(server.to("alice@example.org")) == 1, 15)
        assert server.to("alice@example.org")[0]["Subject"] == "Sign-in from a new device"
        # One durable timer, at 08:00 Paris time.
        timer = bring_forward(2)
        assert timer["due_at"] in {schedule.next_after(started), schedule.next_after(time.time())}
        assert timer["payload"]["address"] == "alice@example.org"
        wait_for(lambda: len(server.to("alice@example.org")) == 2, 15)
        wait_for(lambda: not held(app) and not timers.pending(_digest.KIND), 15)
    digest = server.to("alice@example.org")[1]
    assert digest["Subject"] == "2 new notifications"
    text = digest.get_body(("plain",)).get_content()
    assert "First: About First" in text and "Second: About Second" in text
    assert len(server.to("alice@example.org")) == 2  # sent once
    log = {
        (r["recipient"], r["channel"]): r["status"]
        for r in notifications.deliveries(first["event_id"])
    }
    assert log[("alice", "email")] == "delivered" and log[("bob", "email")] == "delivered"


def test_turning_the_digest_off_sends_what_was_held_at_once(mail_app, worker, timer_sweeper):
    app, notifications, _, server = mail_app
    notifications.preferences.set_digest("alice", "email", "weekly", hour=8, timezone=PARIS)
    with worker(app), timer_sweeper(app):
        notifications.send(message("Held one", ["alice"]))
        notifications.send(message("Held two", ["alice"]))
        wait_for(lambda: len(held(app)) == 2, 15)
        notifications.preferences.set_digest("alice", "email", None)
        wait_for(lambda: len(server.to("alice@example.org")) == 1, 15)
        notifications.send(message("Now immediate", ["alice"]))
        wait_for(lambda: len(server.to("alice@example.org")) == 2, 15)
        # The weekly timer is left, stale: when it runs, it sends nothing.
        wait_for(lambda: len(timers.pending(_digest.KIND)) == 1, 15)  # the flush's is done
        (stale,) = timers.pending(_digest.KIND)
        assert stale["payload"]["schedule"]["frequency"] == "weekly"
        notifications.preferences.set_digest("alice", "email", "daily", hour=8, timezone=PARIS)
        notifications.send(message("Held again", ["alice"]))
        wait_for(lambda: len(held(app)) == 1, 15)
        _digest.run_digest(notifications, stale["payload"])
        assert len(held(app)) == 1
    first, second = server.to("alice@example.org")
    assert first["Subject"] == "2 new notifications" and second["Subject"] == "Now immediate"
    assert len(server.messages) == 2


def test_a_digest_sent_before_a_crash_is_not_sent_again(mail_app, monkeypatch):
    """The worker dies after the SMTP server took the digest, before the held
    events were deleted: the timer runs again and sends nothing more."""
    app, notifications, consumer, server = mail_app
    notifications.preferences.set_digest("alice", "email", "hourly", timezone=PARIS)
    one = message("One", ["alice"])
    consumer(one)  # consumed in this process: the events are held
    consumer(Event.from_dict(dict(one)))  # a run retried: held once
    consumer(message("Two", ["alice"]))
    assert len(held(app)) == 2
    bring_forward(0)
    real = type(consumer).deliver

    def deliver_then_die(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise RuntimeError("worker killed")

    monkeypatch.setattr(type(consumer), "deliver", deliver_then_die)
    timers.sweep(app)  # the handler runs here, sends, then "dies": the timer stays
    assert len(server.messages) == 1 and len(held(app)) == 2
    assert timers.pending(_digest.KIND)[0]["attempts"] == 1
    monkeypatch.setattr(type(consumer), "deliver", real)
    wait_for(lambda: timers.sweep(app) is not None and not timers.pending(_digest.KIND), 10)
    assert held(app) == []
    assert len(server.messages) == 1
    assert server.messages[0]["Subject"] == "2 new notifications"


@pytest.mark.subprocess
def test_a_digest_survives_a_worker_killed_with_sigkill(
    redis_url, tmp_path, smtp_server, monkeypatch
):
    """The worker is killed while it sends the digest (the SMTP server holds
    its RCPT unanswered): another worker sends it, once, with every event."""
    server = smtp_server()
    monkeypatch.setenv("DIGEST_DB", str(tmp_path / "digest.sqlite"))
    monkeypatch.setenv("SMTP_PORT", str(server.port))
    monkeypatch.setenv("REDIS_URL", redis_url)
    sys.modules.pop("tests.digest_app", None)
    from tests import digest_app

    app, notifications = digest_app.app, digest_app.notifications
    address = "alice@example.org"
    with app.app_context():
        notifications.inbox.create_tables()
        notifications.preferences.set_digest("alice", "email", "daily", hour=8, timezone=PARIS)
        for title in ("One", "Two", "Three"):
            notifications.send(message(title, ["alice"]))
        server.stall.add(address)
        with worker_process("tests.digest_app:celery", redis_url) as first:
            wait_for(lambda: len(held(app)) == 3, 20)
            bring_forward(0.5)
            wait_for(lambda: address in server.rcpt_seen, 20)  # sending, held at RCPT
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
        server.stall.discard(address)
        assert server.messages == []
        with worker_process("tests.digest_app:celery", redis_url):
            wait_for(lambda: server.to(address), 30)  # after the 2 s lease
            wait_for(lambda: not held(app) and not timers.pending(_digest.KIND), 20)
        notifications.shutdown()
    (digest,) = server.to(address)
    assert digest["Subject"] == "3 new notifications"
    text = digest.get_body(("plain",)).get_content()
    assert all(f"{t}: About {t}" in text for t in ("One", "Two", "Three"))


def test_a_digest_refused_for_good_is_sent_with_the_next_event(mail_app):
    """The SMTP server refuses a digest (5xx) until its timer is a dead
    letter: the held events stay, and the next event held schedules their
    digest again, due at once (the window after the oldest has passed)."""
    app, notifications, _, server = mail_app
    app.config["NOTIFICATIONS_TIMER_MAX_ATTEMPTS"] = 1
    windowed = FlaskEmailConsumer.from_app(app, sender="noreply@example.com", digest=0.2)
    notifications.create_hub("Windowed").register_consumer(windowed, celery_task_name="windowed")
    windowed(message("Before", ["alice"]))
    server.refuse["alice@example.org"] = ["550 5.1.1 mailbox full"]
    wait_for(lambda: timers.sweep(app) is not None and not timers.pending(_digest.KIND), 10)
    assert server.rcpt_seen == ["alice@example.org"]  # tried once, refused: a dead letter
    assert len(held(app)) == 1 and server.messages == []
    windowed(message("After", ["alice"]))
    (timer,) = timers.pending(_digest.KIND)
    assert timer["due_at"] <= time.time()  # 0.2 s after the oldest held event
    timers.sweep(app)
    (digest,) = server.messages
    assert digest["Subject"] == "2 new notifications" and held(app) == []
