"""The delivery log (issue 17): a real Celery worker, Redis, the inbox database
(SQLite and PostgreSQL) and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import pytest
from flask import request

from flask_notifications import Event, Notifications, reliability
from flask_notifications._state import get_state
from flask_notifications.consumers import Consumer, FlaskEmailConsumer, PushConsumer, StoreConsumer
from flask_notifications.delivery import log as delivery_log
from flask_notifications.errors import InvalidQueryError

from .conftest import wait_for

ADDRESSES = {"alice": "alice@example.org", "bob": "bob@example.org"}


class Flaky(Consumer):
    """Fails its first ``failures`` runs with a transient error, then succeeds."""

    channel = "flaky"
    retry_backoff = 1
    max_retries = 3

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self._runs: list[str] = []

    def consume(self, event, *args, **kwargs):
        self._runs.append(event["event_id"])
        if len(self._runs) <= self.failures:
            raise ConnectionError(f"flaky service down (run {len(self._runs)})\r\nforged line")


class Broken(Consumer):
    """Fails for good: a dead letter."""

    channel = "broken"

    def consume(self, event, *args, **kwargs):
        raise ValueError("the template is broken " + "x" * 2000)


@pytest.fixture
def log_app(make_app, database_uri, smtp_server, worker):
    """Inbox (StoreConsumer), e-mail (FlaskEmailConsumer, its own task) and the
    live stream (PushConsumer) on one hub, with a real worker."""
    server = smtp_server()
    app = make_app(
        NOTIFICATIONS_DATABASE_URI=database_uri,
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=server.port,
        NOTIFICATIONS_DELIVERY_LOG_TTL=3600,
    )
    notifications = Notifications(app)
    notifications.identity_loader(lambda: request.headers.get("X-User"))
    notifications.email_resolver(ADDRESSES.get)
    hub = notifications.create_hub("Messages")
    hub.register_consumer(StoreConsumer())
    hub.register_consumer(FlaskEmailConsumer.from_app(app, sender="noreply@example.com"))
    with app.app_context():
        hub.register_consumer(PushConsumer(notifications.redis, hub))
        notifications.inbox.unread_count("nobody")  # the tables, before the worker writes
        with worker(app):
            yield app, notifications, server
        notifications.shutdown()
        get_state(app).engine.dispose()


def by_key(records):
    return {(r["channel"], r["recipient"]): r for r in records}


def settle(notifications, event_id, count, done=lambda r: r["status"] != "queued"):
    """Wait until ``event_id`` has ``count`` records all past ``done``."""

    def ready():
        found = notifications.deliveries(event_id)
        return found if len(found) == count and all(done(r) for r in found) else None

    return wait_for(ready, 20)


def test_stored_mailed_read_and_suppressed(log_app):
    app, notifications, server = log_app
    notifications.preferences.opt_out("bob", "message", "email")
    event = notifications.send(Event(None, "message", "Hi", "body", recipients=["alice", "bob"]))
    event_id = event["event_id"]
    records = by_key(settle(notifications, event_id, 6))
    assert {k: r["status"] for k, r in records.items()} == {
        ("email", "alice"): "delivered",  # the SMTP server answered 250
        ("email", "bob"): "suppressed",  # opted out
        ("inbox", "alice"): "delivered",
        ("inbox", "bob"): "delivered",
        ("stream", "alice"): "sent",
        ("stream", "bob"): "sent",
    }
    assert [m["To"] for m in server.messages] == [ADDRESSES["alice"]]
    alice_mail = records[("email", "alice")]
    assert list(alice_mail["times"]) == ["queued", "delivered"]
    assert alice_mail["times"]["queued"] <= alice_mail["times"]["delivered"]
    assert alice_mail["updated_at"] == alice_mail["times"]["delivered"]
    assert alice_mail["error"] is None and alice_mail["event_id"] == event_id
    assert records[("email", "bob")]["error"] == "opted out"
    # Kept for NOTIFICATIONS_DELIVERY_LOG_TTL.
    ttl = notifications.redis.ttl(delivery_log.log_key(event_id))
    assert 3500 < ttl <= 3600

    # Read in the inbox, over HTTP.
    client = app.test_client()
    (item,) = client.get("/notifications/inbox", headers={"X-User": "alice"}).get_json()["items"]
    response = client.post(
        f"/notifications/{item['id']}/read", headers={"X-User": "alice"}, json={}
    )
    assert response.status_code == 204
    after = by_key(notifications.deliveries(event_id))
    assert after[("inbox", "alice")]["status"] == "read"
    assert list(after[("inbox", "alice")]["times"]) == ["queued", "delivered", "read"]
    assert after[("inbox", "bob")]["status"] == "delivered"
    # Mark-all-read records the rest, one write.
    assert notifications.inbox.mark_all_read("bob") == 1
    assert by_key(notifications.deliveries(event_id))[("inbox", "bob")]["status"] == "read"

    # Each recipient reads their own records over HTTP; others get 404.
    mine = client.get(f"/notifications/{event_id}/deliveries", headers={"X-User": "alice"})
    assert mine.status_code == 200
    body = mine.get_json()["deliveries"]
    assert {(r["channel"], r["recipient"], r["status"]) for r in body} == {
        ("email", "alice", "delivered"),
        ("inbox", "alice", "read"),
        ("stream", "alice", "sent"),
    }
    other = client.get(f"/notifications/{event_id}/deliveries", headers={"X-User": "carol"})
    unknown = client.get("/notifications/no-such-event/deliveries", headers={"X-User": "carol"})
    assert other.status_code == unknown.status_code == 404
    assert other.get_json() == unknown.get_json()  # nothing tells them apart
    anonymous = client.get(f"/notifications/{event_id}/deliveries")
    assert anonymous.status_code == 401

    # The CLI.
    result = app.test_cli_runner().invoke(args=["notifications", "status", event_id])
    assert result.exit_code == 0, result.output
    assert "email  alice  delivered" in result.output
    assert "email  bob  suppressed" in result.output and "error: opted out" in result.output
    assert "6 record(s)" in result.output
    missing = app.test_cli_runner().invoke(args=["notifications", "status", "nope"])
    assert missing.exit_code != 0 and "nothing in the delivery log" in missing.output


def test_failed_then_delivered_and_dead_with_the_error(make_app, worker, redis_client):
    app = make_app()
    notifications = Notifications(app)
    hub = notifications.create_hub("Work")
    hub.register_consumer(Flaky(failures=1))
    hub.register_consumer(Broken())
    with app.app_context(), worker(app):
        event = notifications.send(Event(None, "job", "t", "b", recipients=["dana"]))
        records = by_key(
            settle(
                notifications, event["event_id"], 2, lambda r: r["status"] in ("delivered", "dead")
            )
        )
        wait_for(lambda: reliability.pending_count() == 0, 15)
        flaky, broken = records[("flaky", "dana")], records[("broken", "dana")]
        assert flaky["status"] == "delivered"
        assert list(flaky["times"]) == ["queued", "failed", "delivered"]
        # The last error stays, cleaned (no line breaks).
        assert flaky["error"] == "ConnectionError: flaky service down (run 1) forged line"
        assert broken["status"] == "dead"
        assert broken["error"].startswith("ValueError: the template is broken xxx")
        assert len(broken["error"]) == delivery_log.ERROR_LIMIT
        letters = reliability.dead_letters()
        assert [letter["task"] for letter in letters] == [_name(hub, Broken)]


def _name(hub, cls):
    return next(name for name, c in hub.consumers.items() if isinstance(c, cls))


def test_a_broadcast_is_recorded_for_star(make_app, worker):
    app = make_app()
    notifications = Notifications(app)
    hub = notifications.create_hub("News", public=True)
    with app.app_context():
        hub.register_consumer(PushConsumer(notifications.redis, hub))
        with worker(app):
            event = notifications.send(Event(None, "news", "t", "b"))
            (record,) = settle(notifications, event["event_id"], 1)
    assert (record["channel"], record["recipient"], record["status"]) == ("stream", "*", "sent")


def test_turned_off_records_nothing(make_app, worker, redis_client):
    app = make_app(NOTIFICATIONS_DELIVERY_LOG=False)
    notifications = Notifications(app)
    hub = notifications.create_hub("Work")
    flaky = Flaky(failures=0)
    hub.register_consumer(flaky)
    with app.app_context(), worker(app):
        event = notifications.send(Event(None, "job", "t", "b", recipients=["dana"]))
        wait_for(lambda: reliability.pending_count() == 0 and flaky._runs, 15)
        delivery_log.record(event["event_id"], "dana", "flaky", "read")
        assert notifications.deliveries(event["event_id"]) == []
        assert not redis_client.exists(delivery_log.log_key(event["event_id"]))


def test_recording_api_checks_its_input(make_app):
    app = make_app()
    notifications = Notifications(app)
    with app.app_context():
        with pytest.raises(InvalidQueryError, match="status must be one of"):
            delivery_log.record("e1", "u", "email", "lost")
        with pytest.raises(InvalidQueryError, match="without '|'"):
            delivery_log.record("e1", "u", "e|mail", "sent")
        assert issubclass(InvalidQueryError, ValueError)
        # Outside a worker, one write; a batch for several recipients.
        delivery_log.record_many(
            "e1", [("u|1", "email", "suppressed", "throttled"), (2, "sms", "sent", None)]
        )
        delivery_log.record("e1", "u|1", "email", "failed", RuntimeError("boom"))
        records = by_key(notifications.deliveries("e1"))
    assert records[("email", "u|1")]["status"] == "failed"  # a recipient may hold '|'
    assert records[("email", "u|1")]["error"] == "RuntimeError: boom"
    assert set(records[("email", "u|1")]["times"]) == {"suppressed", "failed"}
    assert records[("sms", "2")]["status"] == "sent"


def test_on_a_redis_cluster(make_app, cluster_url, redis_url, worker):
    """Each event's log lives in its bucket's slot, beside its other records:
    the claim script and the end-of-event transaction write it there."""
    app = make_app(NOTIFICATIONS_REDIS_URL=cluster_url, CELERY_BROKER_URL=redis_url)
    notifications = Notifications(app)
    hub = notifications.create_hub("Work")
    hub.register_consumer(Flaky(failures=1))
    hub.register_consumer(Broken())
    with app.app_context(), worker(app):
        events = [
            notifications.send(Event(None, "job", f"n{i}", "b", recipients=["dana", 7]))
            for i in range(6)
        ]
        client = notifications.redis
        nodes = {client.get_node_from_key(delivery_log.log_key(e["event_id"])).name for e in events}
        assert len(nodes) > 1  # spread over the shards
        for event in events:
            found = by_key(
                settle(
                    notifications,
                    event["event_id"],
                    4,
                    lambda r: r["status"] in ("delivered", "dead"),
                )  # fmt: skip
            )
            assert {k: r["status"] for k, r in found.items()} == {
                ("flaky", "dana"): "delivered",
                ("flaky", "7"): "delivered",
                ("broken", "dana"): "dead",
                ("broken", "7"): "dead",
            }
        first = by_key(notifications.deliveries(events[0]["event_id"]))[("flaky", "dana")]
        assert list(first["times"]) == ["queued", "failed", "delivered"]  # the first run failed


def test_an_event_that_expired_in_the_queue_is_suppressed(make_app, worker):
    from datetime import UTC, datetime, timedelta

    app = make_app()
    notifications = Notifications(app)
    hub = notifications.create_hub("Work")
    flaky = Flaky(failures=0)
    hub.register_consumer(flaky)
    hub.register_consumer(Broken())
    with app.app_context():
        soon = datetime.now(UTC) + timedelta(seconds=1)
        event = Event(None, "job", "t", "b", recipients=["dana"], expiration_datetime=soon)
        notifications.send(event)
        assert {r["status"] for r in notifications.deliveries(event["event_id"])} == {"queued"}
        wait_for(event.is_expired, 5)
        with worker(app):  # Celery discards the expired message
            found = settle(notifications, event["event_id"], 2)
    assert {(r["channel"], r["status"], r["error"]) for r in found} == {
        ("flaky", "suppressed", "expired before delivery"),
        ("broken", "suppressed", "expired before delivery"),
    }
    assert flaky._runs == []
