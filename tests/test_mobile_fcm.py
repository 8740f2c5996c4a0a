"""FCMConsumer against a local fake FCM (HTTP v1) and OAuth2 token endpoint,
over TLS with a fixture-made certificate, on 127.0.0.1 only."""

from __future__ import annotations

import functools
import json
import os
import ssl
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from flask_notifications import Event, reliability
from flask_notifications.errors import ConfigurationError, PushRejected, PushServiceUnavailable

from .conftest import alerts_app
from .conftest import send_and_finish as send_and_finish_task

pytest.importorskip("google.auth")
pytest.importorskip("httpx")
trustme = pytest.importorskip("trustme")

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from google.auth import jwt as google_jwt  # noqa: E402

from flask_notifications.consumers import FCMConsumer  # noqa: E402

TASK = "tests.mobile.fcm"
PROJECT = "demo-project"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"


class FakeFCM:
    """A token endpoint (``POST /token``, checks the service account's signed
    JWT assertion) and FCM's ``POST /v1/projects/<id>/messages:send`` (checks
    the bearer token and the v1 message shape). ``answers[token]`` lists the
    statuses to answer in turn (then 200); an access token in ``revoked`` (or
    any, with ``revoke_all``) is answered 401."""

    def __init__(self, ca: Any, public_pem: bytes) -> None:
        self.public_pem = public_pem
        self.answers: dict[str, list[int]] = {}
        self.messages: list[dict[str, Any]] = []
        self.attempts: list[tuple[str, int]] = []
        self.times: dict[str, list[float]] = {}
        self.errors: list[str] = []
        self.tokens_issued = 0
        self.issued: set[str] = set()  # access tokens the token endpoint issued
        self.revoked: set[str] = set()  # access tokens answered 401
        self.revoke_all = False  # every access token answered 401
        self.retry_after = "1"
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                fake.handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.base = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def attempts_of(self, token: str) -> list[int]:
        return [status for t, status in self.attempts if t == token]

    def _answer(
        self, handler: BaseHTTPRequestHandler, status: int, body: Any, **headers: str
    ) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _error(self, handler: Any, status: int, problem: str) -> None:
        self.errors.append(problem)
        self._answer(handler, status, {"error": {"code": status, "message": problem}})

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        if handler.path == "/token":
            form = parse_qs(raw.decode())
            if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
                return self._error(handler, 400, "bad grant_type")
            try:
                # google-auth signs for Google's token URI, whatever token_uri says
                claims = google_jwt.decode(
                    form["assertion"][0], certs=self.public_pem, audience=GOOGLE_TOKEN_URI
                )
            except Exception as exc:  # noqa: BLE001 - any bad assertion is a 400
                return self._error(handler, 400, f"bad assertion: {exc}")
            if claims.get("scope") != SCOPE:
                return self._error(handler, 400, f"bad scope {claims.get('scope')!r}")
            with self.lock:
                self.tokens_issued += 1
                token = f"access-{self.tokens_issued}"
                self.issued.add(token)
            return self._answer(
                handler, 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}
            )
        if handler.path != f"/v1/projects/{PROJECT}/messages:send":
            return self._error(handler, 404, f"unknown path {handler.path}")
        bearer = handler.headers.get("Authorization") or ""
        if not bearer.startswith("Bearer ") or bearer[7:] not in self.issued:
            return self._error(handler, 401, "a bearer token the token endpoint did not issue")
        try:
            message = json.loads(raw)["message"]
            token = message["token"]
            assert isinstance(message["notification"]["title"], str)
            assert isinstance(message["notification"]["body"], str)
            assert all(isinstance(v, str) for v in message["data"].values())
            assert set(message) <= {"token", "notification", "data", "android", "apns"}
        except (ValueError, KeyError, TypeError, AssertionError) as exc:
            return self._error(handler, 400, f"bad message: {exc!r}")
        with self.lock:
            if bearer[7:] in self.revoked or self.revoke_all:
                self.attempts.append((token, 401))
                status = 401
            else:
                queue = self.answers.get(token) or []
                status = queue.pop(0) if queue else 200
                self.attempts.append((token, status))
            self.times.setdefault(token, []).append(time.monotonic())
        if status == 401:
            return self._answer(handler, 401, {"error": {
                "code": 401, "status": "UNAUTHENTICATED",
                "message": "Request had invalid authentication credentials."}})  # fmt: skip
        if status == 200:
            self.messages.append(message)
            return self._answer(handler, 200, {"name": f"projects/{PROJECT}/messages/1"})
        if status == 404:
            return self._answer(handler, 404, {"error": {
                "code": 404, "status": "NOT_FOUND", "message": "Requested entity was not found.",
                "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                             "errorCode": "UNREGISTERED"}]}})  # fmt: skip
        if status == 429:
            return self._answer(
                handler, 429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}},
                **{"Retry-After": self.retry_after},
            )  # fmt: skip
        if status == 403:
            return self._answer(handler, 403, {"error": {
                "code": 403, "status": "PERMISSION_DENIED", "message": "SenderId mismatch",
                "details": [{"errorCode": "SENDER_ID_MISMATCH"}]}})  # fmt: skip
        if status == 400:
            return self._answer(handler, 400, {"error": {
                "code": 400, "status": "INVALID_ARGUMENT", "message": "Invalid registration",
                "details": [{"errorCode": "INVALID_ARGUMENT"}]}})  # fmt: skip
        return self._answer(handler, status, {"error": {"code": status, "status": "INTERNAL"}})

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def fcm(ca, tmp_path, monkeypatch):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    service = FakeFCM(ca, public_pem)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    credentials = tmp_path / "service-account.json"
    credentials.write_text(json.dumps({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "k1",
        "private_key": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        "client_email": "push@demo-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": f"{service.base}/token",
    }))  # fmt: skip
    service.credentials = credentials
    yield service
    service.stop()
    assert service.errors == [], "the fake FCM refused a request"


@pytest.fixture
def fcm_app(make_app, tmp_path, fcm):
    app = make_app(
        NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'inbox.sqlite'}",
        NOTIFICATIONS_FCM_CREDENTIALS=str(fcm.credentials),
        NOTIFICATIONS_FCM_ENDPOINT=fcm.base,
    )
    with alerts_app(app, FCMConsumer(), TASK) as stack:
        yield stack


def register(app, notifications, user, token, platform="android"):
    with app.app_context():
        return notifications.devices.add(user, {"platform": platform, "token": token})[0]


def comment(recipients, **custom):
    return Event(None, "comment", "New comment", "Nice post!", sender="bob",
                 recipients=recipients, **custom)  # fmt: skip


#: Send an event and wait until the consumer's task completed or failed for good.
send_and_finish = functools.partial(send_and_finish_task, task=TASK)


def test_messages_reach_every_device_of_the_recipients(fcm_app, fcm, worker):
    app, notifications, hub, _ = fcm_app
    register(app, notifications, "alice", "alice-phone")
    register(app, notifications, "alice", "alice-ipad", "ios")
    register(app, notifications, "bob", "bob-phone")
    register(app, notifications, "dave", "dave-phone")  # not a recipient
    event = comment(
        ["alice", "bob", "carol"], post_id=12, group="post-12", sound="ping",
        image="https://example.test/p.png", priority="high",
        expiration_datetime=datetime.now(UTC) + timedelta(seconds=600),
    )  # fmt: skip
    with worker(app):
        send_and_finish(app, notifications, hub, event)
    assert sorted(m["token"] for m in fcm.messages) == ["alice-ipad", "alice-phone", "bob-phone"]
    message = next(m for m in fcm.messages if m["token"] == "alice-phone")
    assert message["notification"] == {
        "title": "New comment", "body": "Nice post!", "image": "https://example.test/p.png",
    }  # fmt: skip
    assert message["data"]["event_id"] == event["event_id"]
    assert message["data"]["post_id"] == "12" and message["data"]["sender"] == "bob"
    android = message["android"]
    assert android["collapse_key"] == "post-12" and android["priority"] == "HIGH"
    assert android["notification"] == {"sound": "ping"}
    assert 590 <= int(android["ttl"].rstrip("s")) <= 600
    aps_headers = message["apns"]["headers"]
    assert aps_headers["apns-collapse-id"] == "post-12" and aps_headers["apns-priority"] == "10"
    assert aps_headers["apns-expiration"] == str(int(event["expiration_datetime"].timestamp()))
    assert message["apns"]["payload"]["aps"] == {"thread-id": "post-12", "sound": "ping"}
    assert fcm.tokens_issued == 1
    with app.app_context():
        assert reliability.dead_letters() == []


def test_unregistered_tokens_are_deleted(fcm_app, fcm, worker):
    app, notifications, hub, _ = fcm_app
    register(app, notifications, "alice", "gone")
    register(app, notifications, "alice", "fine")
    fcm.answers["gone"] = [404]
    with worker(app):
        send_and_finish(app, notifications, hub, comment(["alice"]))
    assert fcm.attempts_of("gone") == [404] and fcm.attempts_of("fine") == [200]
    with app.app_context():
        assert [d.token for d in notifications.devices.for_user("alice")] == ["fine"]
        assert reliability.dead_letters() == []


def test_429_and_5xx_are_retried_once_per_device(fcm_app, fcm, worker):
    app, notifications, hub, consumer = fcm_app
    consumer.max_retries = 3
    fcm.retry_after = "2"  # more than the backoff (0): the worker waits for it
    register(app, notifications, "alice", "flaky")
    register(app, notifications, "alice", "steady")
    register(app, notifications, "bob", "busy")
    fcm.answers.update(flaky=[500, 503], busy=[429])
    event = comment(["alice", "bob"])
    with worker(app):
        send_and_finish(app, notifications, hub, event)
    assert fcm.attempts_of("flaky") == [500, 503, 200]
    assert fcm.attempts_of("busy") == [429, 200]
    first, second = fcm.times["busy"]
    assert second - first >= 1.9
    assert fcm.attempts_of("steady") == [200]  # once, not again on the retries
    with app.app_context():
        assert reliability.is_done(TASK, hub.hub_id, event["event_id"])
        assert reliability.dead_letters() == []


def test_retry_after_is_honoured(fcm_app, fcm):
    app, notifications, _, consumer = fcm_app
    register(app, notifications, "alice", "busy")
    fcm.answers["busy"] = [429]
    fcm.retry_after = "7"
    with app.app_context(), pytest.raises(PushServiceUnavailable) as info:
        consumer.consume(comment(["alice"]))
    assert info.value.retry_after == 7.0 and "429" in str(info.value)


def test_400_is_a_dead_letter_with_the_reason(fcm_app, fcm, worker):
    app, notifications, hub, _ = fcm_app
    register(app, notifications, "alice", "bad")
    register(app, notifications, "alice", "fine")
    fcm.answers["bad"] = [400]
    with worker(app):
        send_and_finish(app, notifications, hub, comment(["alice"]))
    assert fcm.attempts_of("bad") == [400] and fcm.attempts_of("fine") == [200]
    with app.app_context():
        (letter,) = reliability.dead_letters()
        assert letter["error"].startswith("PushRejected: 1 of 2 FCM message(s)")
        assert "400 INVALID_ARGUMENT" in letter["error"]
        assert len(notifications.devices.for_user("alice")) == 2  # kept


def test_tls_is_verified(fcm_app, fcm, monkeypatch):
    app, notifications, _, consumer = fcm_app
    register(app, notifications, "alice", "phone")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    with app.app_context(), pytest.raises(PushServiceUnavailable):
        consumer.consume(comment(["alice"]))
    assert fcm.attempts == []


def test_ssl_cert_file_alone_adds_the_ca_for_the_token_and_the_messages(fcm_app, fcm, monkeypatch):
    app, notifications, _, consumer = fcm_app
    register(app, notifications, "alice", "phone")
    monkeypatch.setenv("SSL_CERT_FILE", os.environ.pop("REQUESTS_CA_BUNDLE"))
    with app.app_context():
        consumer.consume(comment(["alice"]))
    assert len(fcm.attempts) == 1


def test_opt_outs_platforms_and_settings(fcm_app, fcm, make_app):
    app, notifications, _, consumer = fcm_app
    register(app, notifications, "alice", "phone")
    register(app, notifications, "alice", "ipad", "ios")
    with app.app_context():
        notifications.preferences.opt_out("bob", "comment", "mobile")
        register(app, notifications, "bob", "bob-phone")
        assert FCMConsumer(platforms=("android",)).consume(comment(["alice", "bob"])) == 1
    assert [m["token"] for m in fcm.messages] == ["phone"]
    with pytest.raises(ValueError, match="platforms"):
        FCMConsumer(platforms=("web",))
    with app.app_context():
        app.config["NOTIFICATIONS_FCM_CREDENTIALS"] = None
        with pytest.raises(ConfigurationError, match="NOTIFICATIONS_FCM_CREDENTIALS"):
            consumer.consume(comment(["alice"]))
        app.config["NOTIFICATIONS_FCM_CREDENTIALS"] = str(fcm.credentials) + ".missing"
        with pytest.raises(ConfigurationError, match="service account"):
            consumer.consume(comment(["alice"]))


def test_channels_without_mobile_skip_fcm(fcm_app, fcm, worker):
    app, notifications, hub, _ = fcm_app
    register(app, notifications, "alice", "phone")
    with worker(app):
        send_and_finish(app, notifications, hub, comment(["alice"], channels=["inbox"]))
        send_and_finish(app, notifications, hub, comment(["alice"], channels=["inbox", "mobile"]))
    assert [m["token"] for m in fcm.messages] == ["phone"]
    # ``channels`` steers the delivery; it is not part of the message's data
    assert "channels" not in fcm.messages[0]["data"]
    assert set(fcm.messages[0]["data"]) == {"event_id", "event_type", "sender"}


def test_badge_is_the_unread_count_when_the_hub_stores_to_the_inbox(fcm_app, fcm, worker):
    from flask_notifications.consumers import StoreConsumer

    app, notifications, hub, consumer = fcm_app
    hub.register_consumer(StoreConsumer(), celery_task_name="tests.mobile.store")
    register(app, notifications, "alice", "alice-phone")
    register(app, notifications, "bob", "bob-phone")
    with app.app_context():
        notifications.inbox.store(comment(["alice"]), ["alice"])
        notifications.inbox.store(comment(["alice"]), ["alice"])
        badges = {
            d.token: consumer.message(comment(["alice"]), d, 7)["apns"]["payload"]["aps"]["badge"]
            for d in notifications.devices.all()
        }
        assert badges == {"alice-phone": 7, "bob-phone": 7}
    with worker(app):
        send_and_finish(app, notifications, hub, comment(["alice", "bob"]))
    found = {m["token"]: m for m in fcm.messages}
    assert found["alice-phone"]["apns"]["payload"]["aps"]["badge"] == 3  # 2 unread + this one
    assert found["alice-phone"]["android"]["notification"]["notification_count"] == 3
    assert found["bob-phone"]["apns"]["payload"]["aps"]["badge"] == 1
    fcm.messages.clear()
    with worker(app):  # an explicit badge wins
        send_and_finish(app, notifications, hub, comment(["bob"], badge=9))
    assert fcm.messages[0]["apns"]["payload"]["aps"]["badge"] == 9


def test_a_revoked_access_token_is_fetched_again_and_each_message_sent_once(fcm_app, fcm, worker):
    app, notifications, hub, consumer = fcm_app
    for user, token in (("alice", "alice-phone"), ("alice", "alice-tablet"), ("bob", "bob-phone")):
        register(app, notifications, user, token)
    fcm.revoked.add("access-1")  # the first token the endpoint issues, revoked
    with app.app_context():  # in the same call, not on a retry of the task
        assert consumer.consume(comment(["alice", "bob"])) == 3
    assert fcm.tokens_issued == 2  # fetched again once, not once per message
    for token in ("alice-phone", "alice-tablet", "bob-phone"):
        assert fcm.attempts_of(token) == [401, 200]
    assert sorted(m["token"] for m in fcm.messages) == ["alice-phone", "alice-tablet", "bob-phone"]
    fcm.revoked.add("access-2")  # and again, through a worker
    fcm.attempts.clear()
    event = comment(["bob"])
    with worker(app):
        send_and_finish(app, notifications, hub, event)
    assert fcm.tokens_issued == 3 and fcm.attempts_of("bob-phone") == [401, 200]
    with app.app_context():
        assert reliability.is_done(TASK, hub.hub_id, event["event_id"])
        assert reliability.dead_letters() == []


def test_a_fresh_access_token_refused_again_is_retried_then_a_dead_letter(fcm_app, fcm, worker):
    app, notifications, hub, consumer = fcm_app
    register(app, notifications, "alice", "phone")
    register(app, notifications, "alice", "fine")
    fcm.revoke_all = True
    with app.app_context(), pytest.raises(PushServiceUnavailable) as info:
        consumer.consume(comment(["alice"]))
    assert "401 UNAUTHENTICATED" in str(info.value) and "freshly issued" in str(info.value)
    assert fcm.tokens_issued == 2 and fcm.attempts_of("phone") == [401, 401]
    assert fcm.messages == []
    fcm.attempts.clear()
    consumer.max_retries = 1
    with worker(app):
        send_and_finish(app, notifications, hub, comment(["alice"]))
    assert fcm.attempts_of("phone") == [401, 401, 401, 401]  # two tries, one refresh each
    with app.app_context():
        (letter,) = reliability.dead_letters()
        assert letter["error"].startswith("PushServiceUnavailable: 2 of 2 FCM message(s)")
        assert "freshly issued access token" in letter["error"]
    assert fcm.messages == []


def test_403_is_refused_for_good_naming_the_reason(fcm_app, fcm):
    app, notifications, _, consumer = fcm_app
    register(app, notifications, "alice", "other-project")
    register(app, notifications, "alice", "fine")
    fcm.answers["other-project"] = [403]
    with app.app_context(), pytest.raises(PushRejected) as info:
        consumer.consume(comment(["alice"]))
    assert "403 PERMISSION_DENIED SENDER_ID_MISMATCH" in str(info.value)
    assert fcm.attempts_of("fine") == [200]
    with app.app_context():
        assert len(notifications.devices.for_user("alice")) == 2  # kept
