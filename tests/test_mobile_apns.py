"""APNsConsumer against a local HTTP/2 fake APNs (hypercorn, TLS with a
fixture-made certificate, on 127.0.0.1) that verifies the ES256 provider
token and the headers."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flask_notifications import Event, Notifications, reliability
from flask_notifications._state import get_state
from flask_notifications.errors import ConfigurationError

from .conftest import wait_for

jwt = pytest.importorskip("jwt")
pytest.importorskip("h2")
pytest.importorskip("httpx")
trustme = pytest.importorskip("trustme")
hypercorn_asyncio = pytest.importorskip("hypercorn.asyncio")

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from hypercorn.config import Config  # noqa: E402

from flask_notifications.consumers import APNsConsumer  # noqa: E402

TASK = "tests.mobile.apns"
TOPIC = "com.example.app"
KEY_ID, TEAM_ID = "ABC123DEFG", "DEF123GHIJ"


class FakeAPNs:
    def __init__(self, ca: Any, public_key: Any, tmp_path: Any) -> None:
        self.public_key = public_key
        self.answers: dict[str, list[int]] = {}
        self.delivered: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.attempts: list[tuple[str, int]] = []
        self.errors: list[str] = []
        self.http_versions: set[str] = set()
        self.finished: list[tuple[str, float]] = []
        cert = ca.issue_cert("127.0.0.1")
        cert.cert_chain_pems[0].write_to_path(str(tmp_path / "apns-cert.pem"))
        cert.private_key_pem.write_to_path(str(tmp_path / "apns-key.pem"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.certfile = str(tmp_path / "apns-cert.pem")
        config.keyfile = str(tmp_path / "apns-key.pem")
        config.loglevel = "WARNING"
        config.keep_alive_max_requests = 1_000_000  # no GOAWAY after 1,000 requests
        self.base = f"https://127.0.0.1:{port}"
        self._stop = threading.Event()

        async def stopped() -> None:
            while not self._stop.is_set():
                await asyncio.sleep(0.05)

        self.thread = threading.Thread(
            target=lambda: asyncio.run(
                hypercorn_asyncio.serve(self.app, config, shutdown_trigger=stopped)
            ),
            daemon=True,
        )
        self.thread.start()
        wait_for(lambda: _listening(port), timeout=10)

    def attempts_of(self, token: str) -> list[int]:
        return [status for t, status in self.attempts if t == token]

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.http_versions.add(scope["http_version"])
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break

        async def answer(status: int, reason: str | None = None, **extra: str) -> None:
            data = json.dumps({"reason": reason}).encode() if reason else b""
            hdrs = [(k.encode(), v.encode()) for k, v in extra.items()]
            await send({"type": "http.response.start", "status": status, "headers": hdrs})
            await send({"type": "http.response.body", "body": data})

        problem = None
        token = scope["path"].rsplit("/", 1)[-1]
        auth = headers.get("authorization", "")
        try:
            assert scope["path"].startswith("/3/device/"), scope["path"]
            assert auth.startswith("bearer "), "no bearer token"
            claims = jwt.decode(auth[7:], self.public_key, algorithms=["ES256"])
            header = jwt.get_unverified_header(auth[7:])
            assert header["kid"] == KEY_ID and claims["iss"] == TEAM_ID
            assert abs(claims["iat"] - time.time()) < 3600
            assert headers.get("apns-topic") == TOPIC
            assert headers.get("apns-push-type") == "alert"
            payload = json.loads(body)
            assert isinstance(payload["aps"]["alert"]["title"], str)
        except Exception as exc:  # noqa: BLE001 - any bad request is a 403/400
            problem = repr(exc)
        if problem is not None:
            self.errors.append(problem)
            return await answer(403, "InvalidProviderToken")
        if token.startswith("slow"):
            await asyncio.sleep(1.5)
        queue = self.answers.get(token) or []
        status = queue.pop(0) if queue else 200
        self.attempts.append((token, status))
        if status == 200:
            self.delivered.append((token, headers, payload))
            self.finished.append((token, time.monotonic()))
            return await answer(200, **{"apns-id": "id"})
        if status == 410:
            return await answer(410, "Unregistered")
        if status == 429:
            return await answer(429, "TooManyRequests", **{"retry-after": "1"})
        if status == 400:
            return await answer(400, "BadDeviceToken")
        if status == 413:
            return await answer(413, "PayloadTooLarge")
        return await answer(status, "InternalServerError")

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


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
    service = FakeAPNs(ca, key.public_key(), tmp_path)
    service.key_file = tmp_path / "AuthKey.p8"
    yield service
    service.stop()
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
    notifications = Notifications(app)
    consumer = APNsConsumer()
    consumer.retry_backoff = 0
    consumer.retry_jitter = False
    hub = notifications.create_hub("Alerts")
    hub.register_consumer(consumer, celery_task_name=TASK)
    yield app, notifications, hub, consumer
    with app.app_context():
        engine = get_state(app).engine
        if engine is not None:
            engine.dispose()


def register(app, notifications, user, token, platform="ios"):
    with app.app_context():
        notifications.devices.add(user, {"platform": platform, "token": token})


def comment(recipients, **custom):
    return Event(None, "comment", "New comment", "Nice post!", sender="bob",
                 recipients=recipients, **custom)  # fmt: skip


def send_and_finish(app, notifications, hub, event):
    with app.app_context():
        notifications.send(event)
        event_id = event["event_id"]
        wait_for(
            lambda: reliability.is_done(TASK, hub.hub_id, event_id)
            or any(json.loads(d["event"])["event_id"] == event_id
                   for d in reliability.dead_letters()),
            timeout=20,
        )  # fmt: skip


def test_notifications_reach_the_ios_devices_over_http2(apns_app, apns, worker):
    app, notifications, hub, _ = apns_app
    register(app, notifications, "alice", "a" * 64)
    register(app, notifications, "alice", "android-token", "android")  # not APNs'
    register(app, notifications, "bob", "b" * 64)
    expires = datetime.now(UTC) + timedelta(hours=1)
    event = comment(["alice", "bob"], group="post-12", sound="ping", badge=3, post_id=12,
                    expiration_datetime=expires)  # fmt: skip
    with worker(app):
        send_and_finish(app, notifications, hub, event)
    # Each iOS device, not the Android one. A set: the local fake (hypercorn)
    # now and then drops its HTTP/2 connection after answering, and the retry
    # then pushes again; once-per-device across retries is tested below.
    assert {t for t, _, _ in apns.delivered} == {"a" * 64, "b" * 64}
    assert apns.http_versions == {"2"}
    _, headers, payload = apns.delivered[0]
    assert headers["apns-collapse-id"] == "post-12" and headers["apns-priority"] == "10"
    assert headers["apns-expiration"] == str(int(expires.timestamp()))
    assert payload["aps"] == {
        "alert": {"title": "New comment", "body": "Nice post!"},
        "thread-id": "post-12", "sound": "ping", "badge": 3,
    }  # fmt: skip
    assert payload["data"]["post_id"] == 12 and payload["data"]["event_id"] == event["event_id"]
    with app.app_context():
        assert reliability.dead_letters() == []


def test_gone_tokens_are_deleted_and_errors_retried_or_dead_lettered(apns_app, apns, worker):
    app, notifications, hub, consumer = apns_app
    consumer.max_retries = 3
    for token in ("gone", "bad", "flaky", "busy", "steady"):
        register(app, notifications, "alice", token)
    apns.answers.update(gone=[410], bad=[400], flaky=[500], busy=[429])
    with worker(app):
        send_and_finish(app, notifications, hub, comment(["alice"]))
    # The local fake (hypercorn) now and then drops its HTTP/2 connection after
    # answering 200; the retry then pushes again. So: the scripted answers in
    # order, then only successes (exact once-only is tested on FCM's fake).
    for token, first in (("flaky", 500), ("busy", 429)):
        attempts = apns.attempts_of(token)
        assert attempts[:2] == [first, 200] and set(attempts[2:]) <= {200}
    assert set(apns.attempts_of("steady")) == {200}
    assert apns.attempts_of("gone") == [410] and apns.attempts_of("bad") == [400]
    with app.app_context():
        tokens = {d.token for d in notifications.devices.for_user("alice")}
        assert tokens == {"flaky", "busy", "steady"}  # 410 and BadDeviceToken deleted
        assert reliability.dead_letters() == []


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
    started = time.monotonic()
    with app.app_context():
        assert APNsConsumer().consume(comment(["alice"] + [f"user{i}" for i in range(30)])) == 31
    elapsed = time.monotonic() - started
    slow_at = dict(apns.finished)["slow-device"]
    assert all(at < slow_at for token, at in apns.finished if token != "slow-device")
    assert elapsed < 1.5 * 2  # not one slow answer per batch of 20
