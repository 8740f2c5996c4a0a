"""APNsConsumer against a local fake APNs (``tests/apns_server.py``: HTTP/2
on ``h2``, TLS with a fixture-made certificate, on 127.0.0.1) that verifies
the ES256 provider token and the headers, answers scripted statuses per
token, and can send GOAWAY with requests in flight."""

from __future__ import annotations

import functools
import json
import os
from datetime import UTC, datetime, timedelta

import pytest

from flask_notifications import Event, reliability
from flask_notifications.errors import ConfigurationError, PushRejected, PushServiceUnavailable

from .conftest import alerts_app
from .conftest import send_and_finish as send_and_finish_task

jwt = pytest.importorskip("jwt")
pytest.importorskip("h2")
pytest.importorskip("httpx")
trustme = pytest.importorskip("trustme")

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from flask_notifications.consumers import APNsConsumer  # noqa: E402
from flask_notifications.consumers.apns_consumer import _settings  # noqa: E402

from .apns_server import FakeAPNs  # noqa: E402

TASK = "tests.mobile.apns"
TOPIC = "com.example.app"
KEY_ID, TEAM_ID = "ABC123DEFG", "DEF123GHIJ"


@pytest.fixture
def apns(tmp_path, monkeypatch):
    ca = trustme.CA()
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "AuthKey.p8").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )  # fmt: skip
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    service = FakeAPNs(ca, key.public_key(), topic=TOPIC, key_id=KEY_ID, team_id=TEAM_ID)
    service.key_file = tmp_path / "AuthKey.p8"
    yield service
    service.stop()  # joins its threads: a clean shutdown
    assert service.errors == [], "the fake APNs refused a request"


@pytest.fixture
def apns_app(make_app, tmp_path, apns):
    app = make_app(
        NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'inbox.sqlite'}",
        NOTIFICATIONS_APNS_KEY_FILE=str(apns.key_file),
        NOTIFICATIONS_APNS_KEY_ID=KEY_ID,
        NOTIFICATIONS_APNS_TEAM_ID=TEAM_ID,
        NOTIFICATIONS_APNS_TOPIC=TOPIC,
        NOTIFICATIONS_APNS_ENDPOINT=apns.base,
    )
    with alerts_app(app, APNsConsumer(), TASK) as stack:
        yield stack


def register(app, notifications, user, token, platform="ios"):
    with app.app_context():
        notifications.devices.add(user, {"platform": platform, "token": token})


def comment(recipients, **custom):
    return Event(None, "comment", "New comment", "Nice post!", sender="bob",
                 recipients=recipients, **custom)  # fmt: skip


#: Send an event and wait until the consumer's task completed or failed for good.
send_and_finish = functools.partial(send_and_finish_task, task=TASK)


def test_notifications_reach_the_ios_devices_over_http2(apns_app, apns, worker):
    app, notifications, hub, _ = apns_app
    register(app, notifications, "alice", "a" * 64)
    register(app, notifications, "alice", "android-token", "android")  # not APNs'
    register(app, notifications, "bob", "b" * 64)
    expires = datetime.now(UTC) + timedelta(hours=1)
    event = comment(["alice", "bob"], group="post-12", sound="ping", badge=3, post_id=12,
                    expiration_datetime=expires, channels=["inbox", "mobile"])  # fmt: skip
    with worker(app):
        send_and_finish(app, notifications, hub, event)
    # each iOS device once, not the Android one
    assert sorted(t for t, _, _ in apns.delivered) == ["a" * 64, "b" * 64]
    assert apns.attempts_of("a" * 64) == [200] and apns.attempts_of("b" * 64) == [200]
    assert apns.connections == 1
    _, headers, payload = apns.delivered[0]
    assert headers["apns-topic"] == TOPIC and headers["apns-push-type"] == "alert"
    assert headers["apns-collapse-id"] == "post-12" and headers["apns-priority"] == "10"
    assert headers["apns-expiration"] == str(int(expires.timestamp()))
    assert payload["aps"] == {
        "alert": {"title": "New comment", "body": "Nice post!"},
        "thread-id": "post-12", "sound": "ping", "badge": 3,
    }  # fmt: skip
    # the custom data: not ``channels`` (it steers the delivery), nor what aps carries
    assert payload["data"] == {
        "event_id": event["event_id"], "event_type": "comment", "sender": "bob",
        "group": "post-12", "post_id": 12,
    }  # fmt: skip
    with app.app_context():
        assert reliability.dead_letters() == []


def test_gone_tokens_are_deleted_and_errors_retried_or_dead_lettered(apns_app, apns, worker):
    app, notifications, hub, consumer = apns_app
    consumer.max_retries = 3
    for token in ("gone", "bad", "flaky", "busy", "steady"):
        register(app, notifications, "alice", token)
    apns.answers.update(gone=[410], bad=[400], flaky=[500, 503], busy=[429])
    with worker(app):
        send_and_finish(app, notifications, hub, comment(["alice"]))
    # each device once across the retries: the 200s exactly once
    assert apns.attempts_of("flaky") == [500, 503, 200]
    assert apns.attempts_of("busy") == [429, 200]
    assert apns.attempts_of("steady") == [200]
    assert apns.attempts_of("gone") == [410] and apns.attempts_of("bad") == [400]
    assert sorted(t for t, _, _ in apns.delivered) == ["busy", "flaky", "steady"]
    with app.app_context():
        tokens = {d.token for d in notifications.devices.for_user("alice")}
        assert tokens == {"flaky", "busy", "steady"}  # 410 and BadDeviceToken deleted
        assert reliability.dead_letters() == []


def test_retry_after_is_honoured(apns_app, apns):
    app, notifications, _, consumer = apns_app
    register(app, notifications, "alice", "busy")
    register(app, notifications, "alice", "fine")
    apns.answers["busy"] = [429]
    apns.retry_after = "7"
    with app.app_context(), pytest.raises(PushServiceUnavailable) as info:
        consumer.consume(comment(["alice"]))
    assert info.value.retry_after == 7.0 and "429 TooManyRequests" in str(info.value)
    with app.app_context():  # the retry sends to the busy device only
        assert consumer.consume(comment(["alice"])) == 2
    assert apns.attempts_of("fine") == [200, 200]  # two events


def test_refused_notifications_are_dead_letters(apns_app, apns, worker):
    app, notifications, hub, _ = apns_app
    register(app, notifications, "alice", "big")
    apns.answers["big"] = [413]
    with worker(app):
        send_and_finish(app, notifications, hub, comment(["alice"]))
    with app.app_context():
        (letter,) = reliability.dead_letters()
        assert letter["error"].startswith("PushRejected: 1 of 1 APNs notification(s)")
        assert "413 PayloadTooLarge" in letter["error"]
    assert apns.attempts_of("big") == [413]


def test_the_fake_refuses_a_bad_token_or_topic_as_apns_does(apns_app, apns, tmp_path):
    app, notifications, _, consumer = apns_app
    register(app, notifications, "alice", "a" * 64)
    with app.app_context():
        app.config["NOTIFICATIONS_APNS_TOPIC"] = "com.example.other"
        with pytest.raises(PushRejected, match="400 TopicDisallowed"):
            consumer.consume(comment(["alice"]))
        other = tmp_path / "Other.p8"
        other.write_bytes(
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )  # fmt: skip
        app.config["NOTIFICATIONS_APNS_TOPIC"] = TOPIC
        app.config["NOTIFICATIONS_APNS_KEY_FILE"] = str(other)
        with pytest.raises(PushRejected, match="403 InvalidProviderToken"):
            consumer.consume(comment(["alice"]))
    assert [e.split(":")[0] for e in apns.errors] == [
        "400 TopicDisallowed",
        "403 InvalidProviderToken",
    ]
    assert apns.delivered == []
    apns.errors.clear()


def test_missing_settings_are_configuration_errors(apns_app, apns):
    app, notifications, _, consumer = apns_app
    register(app, notifications, "alice", "a" * 64)
    with app.app_context():
        app.config["NOTIFICATIONS_APNS_TOPIC"] = None
        with pytest.raises(ConfigurationError, match="NOTIFICATIONS_APNS_TOPIC"):
            consumer.consume(comment(["alice"]))
        app.config["NOTIFICATIONS_APNS_TOPIC"] = TOPIC
        app.config["NOTIFICATIONS_APNS_KEY_FILE"] = str(apns.key_file) + ".missing"
        with pytest.raises(ConfigurationError, match="p8"):
            consumer.consume(comment(["alice"]))
        app.config["NOTIFICATIONS_APNS_ENDPOINT"] = "http://127.0.0.1:1"
        with pytest.raises(ConfigurationError, match="https"):
            consumer.consume(comment(["alice"]))
    assert apns.attempts == []
    base = {f"NOTIFICATIONS_APNS_{n}": "x" for n in ("KEY_FILE", "KEY_ID", "TEAM_ID", "TOPIC")}
    assert _settings(base)["ENDPOINT"] == "https://api.push.apple.com"
    sandbox = _settings({**base, "NOTIFICATIONS_APNS_SANDBOX": True})
    assert sandbox["ENDPOINT"] == "https://api.sandbox.push.apple.com"


def test_thread_and_normal_priority(apns_app, apns):
    app, notifications, _, consumer = apns_app
    register(app, notifications, "alice", "a" * 64)
    with app.app_context():
        assert consumer.consume(comment(["alice"], thread="t-1", priority="normal")) == 1
    ((_, headers, payload),) = apns.delivered
    assert headers["apns-priority"] == "5" and headers["apns-collapse-id"] == "t-1"
    assert payload["aps"]["thread-id"] == "t-1" and "apns-expiration" not in headers


def test_badge_is_the_unread_count_when_the_hub_stores_to_the_inbox(apns_app, apns, worker):
    from flask_notifications.consumers import StoreConsumer

    app, notifications, hub, _ = apns_app
    hub.register_consumer(StoreConsumer(), celery_task_name="tests.mobile.store")
    register(app, notifications, "alice", "a" * 64)
    with app.app_context():
        notifications.inbox.store(comment(["alice"]), ["alice"])
    with worker(app):
        send_and_finish(app, notifications, hub, comment(["alice"]))
    ((_, _, payload),) = apns.delivered
    assert payload["aps"]["badge"] == 2


def test_a_slow_answer_does_not_hold_the_others(apns_app, apns):
    app, notifications, _, _ = apns_app
    register(app, notifications, "alice", "slow-device")
    for i in range(30):
        register(app, notifications, f"user{i}", f"fast{i}")
    with app.app_context():
        assert APNsConsumer().consume(comment(["alice"] + [f"user{i}" for i in range(30)])) == 31
    slow_at = dict(apns.finished)["slow-device"]
    assert all(at < slow_at for token, at in apns.finished if token != "slow-device")
    # multiplexed: one connection, several requests open on it at once
    assert apns.connections == 1 and apns.max_in_flight > 1
    assert sorted(t for t, _, _ in apns.delivered) == sorted(
        ["slow-device"] + [f"fast{i}" for i in range(30)]
    )


@pytest.mark.parametrize("late", [False, True], ids=["answers-then-goaway", "goaway-then-answers"])
def test_goaway_with_requests_in_flight_resends_only_the_unprocessed(apns_app, apns, late):
    app, notifications, _, consumer = apns_app
    tokens = [f"{i:064x}" for i in range(40)]
    for i, token in enumerate(tokens):
        register(app, notifications, f"user{i}", token)
    # The first connection holds its answers until 15 requests are open on
    # it, answers the 5 lowest streams, then GOAWAY with the 5th as the
    # last-stream-id: the 10 others were not processed.
    # ``late``: the GOAWAY frame comes first, then the 5 answers (read all the same).
    apns.goaway(after=5, waiting=10, late=late)
    with app.app_context():  # in place, not on a retry of the task
        assert consumer.consume(comment([f"user{i}" for i in range(40)])) == 40
    assert apns.goaways and apns.goaways[0][0] == 1 and apns.goaways[0][1] > 0
    assert apns.max_in_flight >= 15  # 15 streams open at once on one connection
    assert len(apns.dropped) >= 10
    assert apns.connections == 2  # reconnected once
    # each device exactly once: the answered ones not again, the dropped ones resent
    assert sorted(t for t, _, _ in apns.delivered) == sorted(tokens)
    assert all(apns.attempts_of(token) == [200] for token in tokens)
    with app.app_context():
        assert reliability.dead_letters() == []


def test_tls_is_verified_and_an_image_wakes_the_service_extension(apns_app, apns, monkeypatch):
    app, notifications, _, consumer = apns_app
    register(app, notifications, "alice", "a" * 64)
    ca_file = os.environ["SSL_CERT_FILE"]
    monkeypatch.delenv("SSL_CERT_FILE")
    with app.app_context(), pytest.raises(PushServiceUnavailable, match="CERTIFICATE_VERIFY"):
        consumer.consume(comment(["alice"]))
    assert apns.attempts == []
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    with app.app_context():
        assert consumer.consume(comment(["alice"], image="https://example.test/p.png")) == 1
    ((_, _, payload),) = apns.delivered
    assert payload["aps"]["mutable-content"] == 1
    assert payload["data"]["image"] == "https://example.test/p.png"


def test_no_answer_in_time_is_retried_with_the_task_and_the_others_not_resent(apns_app, apns):
    app, notifications, _, _ = apns_app
    register(app, notifications, "alice", "slow-device")  # answered after 1.5 s
    register(app, notifications, "bob", "b" * 64)
    consumer = APNsConsumer(timeout=0.3)
    event = comment(["alice", "bob"])
    with app.app_context(), pytest.raises(PushServiceUnavailable) as info:
        consumer.consume(event)
    assert "1 of 2" in str(info.value) and "TimeoutError" in str(info.value)
    apns.slow_seconds = 0
    with app.app_context():  # the task's retry of the same event: the slow device only
        assert consumer.consume(event) == 1
    assert apns.attempts_of("b" * 64) == [200]
    # APNs had processed it: the documented case where a device may get it twice
    assert apns.attempts_of("slow-device") == [200, 200]


@pytest.mark.parametrize(
    ("status", "reason"), [(400, "BadTopic"), (403, "InvalidProviderToken")], ids=["400", "403"]
)
def test_400_and_403_through_a_worker_are_dead_letters_naming_the_reason(
    apns_app, apns, worker, status, reason
):
    app, notifications, hub, consumer = apns_app
    consumer.max_retries = 3  # a retry would show as a second attempt
    register(app, notifications, "alice", "refused")
    register(app, notifications, "alice", "fine")
    register(app, notifications, "bob", "b" * 64)
    apns.answers["refused"] = [(status, reason)]
    event = comment(["alice", "bob"])
    with worker(app):
        send_and_finish(app, notifications, hub, event)
    # refused once and not retried; the others delivered once
    assert apns.attempts_of("refused") == [status]
    assert apns.attempts_of("fine") == [200] and apns.attempts_of("b" * 64) == [200]
    assert sorted(t for t, _, _ in apns.delivered) == ["b" * 64, "fine"]
    with app.app_context():
        (letter,) = reliability.dead_letters()
        assert json.loads(letter["event"])["event_id"] == event["event_id"]
        assert letter["error"].startswith("PushRejected: 1 of 3 APNs notification(s)")
        assert f"APNs answered {status} {reason}" in letter["error"]
        # not a gone device: kept
        assert {d.token for d in notifications.devices.for_user("alice")} == {"refused", "fine"}


def test_refused_streams_are_sent_again_and_each_device_gets_the_event_once(apns_app, apns):
    app, notifications, _, consumer = apns_app
    tokens = [f"{i:064x}" for i in range(20)]
    for i, token in enumerate(tokens):
        register(app, notifications, f"user{i}", token)
    apns.refuse_streams(6)  # RST_STREAM REFUSED_STREAM: not processed
    with app.app_context():  # resent in place, not on a retry of the task
        assert consumer.consume(comment([f"user{i}" for i in range(20)])) == 20
    assert len(apns.refused) == 6
    assert apns.connections == 1  # a refused stream leaves the connection usable
    assert sorted(t for t, _, _ in apns.delivered) == sorted(tokens)
    assert all(apns.attempts_of(token) == [200] for token in tokens)
    with app.app_context():
        assert reliability.dead_letters() == []


def test_a_stream_refused_past_the_resends_is_retried_with_the_task(apns_app, apns, worker):
    app, notifications, hub, _ = apns_app
    register(app, notifications, "alice", "a" * 64)
    register(app, notifications, "bob", "b" * 64)
    apns.refuse_streams(8)  # more than both devices' resends (3 each, 4 requests)
    with worker(app):
        send_and_finish(app, notifications, hub, comment(["alice", "bob"]))
    assert len(apns.refused) == 8
    # the task's retry sends what was not processed; each device once
    assert sorted(t for t, _, _ in apns.delivered) == ["a" * 64, "b" * 64]
    assert apns.attempts_of("a" * 64) == [200] and apns.attempts_of("b" * 64) == [200]
    with app.app_context():
        assert reliability.dead_letters() == []
