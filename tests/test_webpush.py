"""Web Push: WebPushConsumer through a real Celery worker, the subscription API,
the service worker and ``flask notifications vapid-keys``.

The push service is a local HTTP receiver that speaks the real protocol: it
checks the VAPID JWT (ES256 signature, ``aud``, ``exp``, ``sub``) and decrypts
the ``aes128gcm`` body with the keys of a browser-like subscription.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import json
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
import pytest
import sqlalchemy
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from flask_notifications import (
    ConfigurationError,
    Event,
    InvalidQueryError,
    Notifications,
    PushRejected,
    PushServiceUnavailable,
    reliability,
)
from flask_notifications._state import get_state
from flask_notifications.consumers import Consumer, WebPushConsumer
from flask_notifications.errors import PushSubscriptionConflict
from flask_notifications.inbox.models import push_subscriptions as table
from flask_notifications.webpush import generate_vapid_keys

from .conftest import alerts_app, wait_for
from .conftest import send_and_finish as send_and_finish_task

SUB = "mailto:push-admin@example.com"
TASK = "tests.webpush.push"
#: The push service below listens on 127.0.0.1: allowed by explicit setting only.
LOOPBACK = {"NOTIFICATIONS_WEBPUSH_ALLOWED_NETWORKS": ["127.0.0.0/8"]}
#: Made-up push service hosts and the (public) addresses the fake resolver gives
#: them; nothing ever connects to them.
FAKE_HOSTS = {"push.example.com": ["93.184.215.14"], "p.example.com": ["93.184.215.14"]}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- a push service that speaks the protocol ------------------------------------------


class Browser:
    """A browser's side of a subscription: its own P-256 key pair and auth secret."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)

    def subscription(self) -> dict[str, Any]:
        """What ``PushSubscription.toJSON()`` gives."""
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(point), "auth": b64url(self.auth)},
        }


class PushService:
    """Stands in for a push service on 127.0.0.1; see the module docstring."""

    def __init__(self, sub: str, public_key: str | None) -> None:
        self.sub = sub
        self.public_key = public_key
        self.browsers: dict[str, Browser] = {}
        self.answers: dict[str, list[int]] = {}  # token -> statuses to answer first
        self.attempts: list[tuple[str, int]] = []  # (token, status answered)
        self.delivered: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                service.handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def browser(self, answers: list[int] | None = None) -> Browser:
        token = b64url(os.urandom(9))
        browser = Browser(f"{self.origin}/push/{token}")
        self.browsers[token] = browser
        self.answers[token] = list(answers or [])
        return browser

    def payloads(self, browser: Browser) -> list[dict[str, Any]]:
        token = browser.endpoint.rsplit("/", 1)[1]
        with self.lock:
            return [p for t, p, _ in self.delivered if t == token]

    def attempts_of(self, browser: Browser) -> list[int]:
        token = browser.endpoint.rsplit("/", 1)[1]
        with self.lock:
            return [status for t, status in self.attempts if t == token]

    def _verify_vapid(self, authorization: str) -> None:
        match = re.fullmatch(r"vapid t=([\w-]+\.[\w-]+\.[\w-]+),k=([\w-]+)", authorization)
        assert match, f"Authorization is not 'vapid t=...,k=...': {authorization[:60]!r}"
        token, key = match.groups()
        if self.public_key is not None:
            assert key == self.public_key, "k is not the configured VAPID public key"
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
        header, claims, signature = token.split(".")
        assert json.loads(unb64url(header)) == {"typ": "JWT", "alg": "ES256"}
        raw = unb64url(signature)
        assert len(raw) == 64, "an ES256 JWS signature is r || s, 64 bytes"
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        try:
            public.verify(der, f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise AssertionError("bad VAPID signature") from None
        claims = json.loads(unb64url(claims))
        assert claims["aud"] == self.origin, claims
        assert time.time() < claims["exp"] <= time.time() + 24 * 3600, claims
        assert claims["sub"] == self.sub, claims

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        token = handler.path.rsplit("/", 1)[-1]
        body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        browser = self.browsers.get(token)
        status = 404
        if browser is not None:
            try:
                self._verify_vapid(handler.headers.get("Authorization", ""))
                assert handler.headers.get("Content-Encoding") == "aes128gcm"
                assert handler.headers.get("TTL", "").isdigit()
                assert len(body) <= 4096, f"encrypted body of {len(body)} bytes"
                plain = http_ece.decrypt(
                    body,
                    private_key=browser.private_key,
                    auth_secret=browser.auth,
                    version="aes128gcm",
                )
                payload = json.loads(plain)
            except Exception as exc:  # noqa: BLE001 - recorded, and the test fails on it
                with self.lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                status = 400
            else:
                with self.lock:
                    queue = self.answers[token]
                    status = queue.pop(0) if queue else 201
                    if 200 <= status < 300:
                        self.delivered.append(
                            (token, payload, {k.lower(): v for k, v in handler.headers.items()})
                        )
        with self.lock:
            self.attempts.append((token, status))
        handler.send_response(status)
        handler.send_header("Content-Length", "0")
        handler.end_headers()


class FakeResolver:
    """``socket.getaddrinfo`` for the tests: made-up host names resolve to the
    addresses the test says (a list, or a callable giving one, called at each
    resolution); address literals and ``localhost`` are resolved for real;
    any other name fails, so no test sends a DNS query out."""

    def __init__(self, names: dict[str, Any]) -> None:
        self.names = dict(names)
        self.calls: list[str] = []
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name in self.names:
            self.calls.append(name)
            addresses = self.names[name]
            addresses = addresses() if callable(addresses) else addresses
            number = int(port or 0)
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, number, 0, 0))
                if ":" in a
                else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, number))
                for a in addresses
            ]
        try:
            ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            if name != "localhost":
                raise socket.gaierror(socket.EAI_NONAME, f"{name} is not a test host") from None
        return self.real(host, port, *args, **kwargs)


@pytest.fixture(autouse=True)
def resolver(monkeypatch) -> FakeResolver:
    """Every test of this module resolves names through :class:`FakeResolver`."""
    fake = FakeResolver(FAKE_HOSTS)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture(scope="module")
def vapid_keys() -> tuple[str, str]:
    return generate_vapid_keys()


@pytest.fixture
def push_service(vapid_keys):
    service = PushService(SUB, vapid_keys[1])
    service.thread.start()
    yield service
    service.server.shutdown()
    service.server.server_close()
    assert service.errors == [], "the push service refused a request"


@pytest.fixture
def push_app(make_app, tmp_path, vapid_keys):
    """An app with VAPID keys, an SQLite inbox database, a hub with a
    WebPushConsumer (no waiting between retries) and X-User as identity."""
    app = make_app(
        NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'inbox.sqlite'}",
        NOTIFICATIONS_VAPID_PRIVATE_KEY=vapid_keys[0],
        NOTIFICATIONS_VAPID_PUBLIC_KEY=vapid_keys[1],
        NOTIFICATIONS_VAPID_CLAIMS_SUB=SUB,
        **LOOPBACK,
    )
    with alerts_app(app, WebPushConsumer(ttl=3600, timeout=5), TASK) as stack:
        yield stack


def subscribe(app, notifications, user, browser):
    with app.app_context():
        return notifications.push_subscriptions.add(user, browser.subscription())[0]


def comment(recipients, title="New comment", body="Nice post!", **custom):
    return Event(None, "comment", title, body, sender="bob", recipients=recipients, **custom)


#: Send an event and wait until the consumer's task completed or failed for good.
send_and_finish = functools.partial(send_and_finish_task, task=TASK)


# -- delivery through a real worker ---------------------------------------------------


def test_pushes_reach_every_browser_of_the_recipients(push_app, push_service, worker):
    app, notifications, hub, _ = push_app
    alice_laptop, alice_phone = push_service.browser(), push_service.browser()
    bob, dave = push_service.browser(), push_service.browser()
    for user, browser in [("alice", alice_laptop), ("alice", alice_phone), ("bob", bob)]:
        subscribe(app, notifications, user, browser)
    subscribe(app, notifications, "dave", dave)  # subscribed, but not a recipient
    event = comment(
        ["alice", "bob", "carol"],  # carol has no subscription
        icon="/static/comment.png",
        url="/posts/12#c3",
        post_id=12,
        tags_seen=["a"],
        channels=["webpush", "inbox"],  # steers the delivery; not in the data
    )
    with worker(app):
        send_and_finish(app, notifications, hub, event)
    expected = {
        "title": "New comment",
        "body": "Nice post!",
        "timestamp": event["timestamp"],
        "icon": "/static/comment.png",
        "url": "/posts/12#c3",
        "data": {
            "event_id": event["event_id"],
            "event_type": "comment",
            "sender": "bob",
            "post_id": 12,
            "tags_seen": ["a"],
        },
    }
    for browser in (alice_laptop, alice_phone, bob):
        assert push_service.payloads(browser) == [expected]
    assert push_service.payloads(dave) == []
    assert len(push_service.attempts) == 3
    (_, _, headers) = push_service.delivered[0]
    assert headers["ttl"] == "3600" and "urgency" not in headers
    with app.app_context():
        assert reliability.dead_letters() == []


def test_client_action_and_the_seed_fields(push_app, push_service):
    """Per-notification icon, title, body, client action and data (the notifier
    service's "different icon, title, body and data in each message")."""
    app, notifications, _, consumer = push_app
    browser = push_service.browser()
    subscribe(app, notifications, "alice", browser)
    with app.app_context():
        consumer(comment(["alice"], title="Gift for you!", icon="gift", client_action="/gifts"))
        consumer(comment(["alice"], client_action="OPEN_ARTICLE", badge="/b.png", tag="art"))
        consumer(comment(["alice"], url="javascript:alert(1)"))
    gift, article, unsafe = push_service.payloads(browser)
    assert (gift["title"], gift["icon"], gift["url"], gift["client_action"]) == (
        "Gift for you!", "gift", "/gifts", "/gifts",
    )  # fmt: skip
    assert "url" not in article and article["client_action"] == "OPEN_ARTICLE"
    assert (article["badge"], article["tag"]) == ("/b.png", "art")
    assert "url" not in unsafe  # only http(s) URLs and paths are opened
    assert "recipients" not in json.dumps([gift, article, unsafe])


def test_any_2xx_answer_counts_as_delivered(push_app, push_service):
    app, notifications, _, consumer = push_app
    browsers = [push_service.browser(answers=[status]) for status in (200, 201, 202, 204)]
    for browser in browsers:
        subscribe(app, notifications, "alice", browser)
    with app.app_context():
        assert consumer(comment(["alice"])) == 4
        assert len(notifications.push_subscriptions.for_users(["alice"])) == 4
    assert [push_service.attempts_of(b) for b in browsers] == [[200], [201], [202], [204]]


@pytest.mark.parametrize("status", [404, 410])
def test_a_gone_subscription_is_deleted(push_app, push_service, worker, status):
    app, notifications, hub, _ = push_app
    gone, kept = push_service.browser(answers=[status]), push_service.browser()
    subscribe(app, notifications, "alice", gone)
    kept_id = subscribe(app, notifications, "alice", kept)
    with worker(app):
        send_and_finish(app, notifications, hub, comment(["alice"]))
    with app.app_context():
        assert [s.id for s in notifications.push_subscriptions.for_users(["alice"])] == [kept_id]
        assert reliability.dead_letters() == []
    assert push_service.attempts_of(gone) == [status]
    assert len(push_service.payloads(kept)) == 1


def test_server_errors_are_retried_without_duplicates(push_app, push_service, worker):
    app, notifications, hub, consumer = push_app
    consumer.max_retries = 3
    flaky = push_service.browser(answers=[500, 503])
    busy = push_service.browser(answers=[429])
    steady = push_service.browser()
    subscribe(app, notifications, "alice", flaky)
    subscribe(app, notifications, "alice", steady)
    subscribe(app, notifications, "bob", busy)
    event = comment(["alice", "bob"])
    with worker(app):
        send_and_finish(app, notifications, hub, event)
    assert push_service.attempts_of(flaky) == [500, 503, 201]
    assert push_service.attempts_of(busy) == [429, 201]
    assert push_service.attempts_of(steady) == [201]  # served once, not again on retries
    for browser in (flaky, busy, steady):
        assert [p["data"]["event_id"] for p in push_service.payloads(browser)] == [
            event["event_id"]
        ]
    with app.app_context():
        assert reliability.is_done(TASK, hub.hub_id, event["event_id"])
        assert reliability.dead_letters() == []


def test_exhausted_retries_leave_a_dead_letter(push_app, push_service, worker):
    app, notifications, hub, consumer = push_app
    consumer.max_retries = 1
    down = push_service.browser(answers=[500, 500, 500])
    fine = push_service.browser()
    subscribe(app, notifications, "alice", down)
    subscribe(app, notifications, "alice", fine)
    event = comment(["alice"])
    with worker(app):
        send_and_finish(app, notifications, hub, event)
    assert push_service.attempts_of(down) == [500, 500]
    assert push_service.attempts_of(fine) == [201]
    with app.app_context():
        (letter,) = reliability.dead_letters()
        assert letter["task"] == TASK and json.loads(letter["event"]) == json.loads(event.to_json())
        assert letter["error"].startswith("PushServiceUnavailable: 1 of 2 push(es)")
        assert "answered 500" in letter["error"]
        # Replaying sends to the subscription that failed only.
        push_service.answers[down.endpoint.rsplit("/", 1)[1]] = []
        with worker(app):
            assert reliability.replay_dead_letters() == 1
            wait_for(lambda: reliability.is_done(TASK, hub.hub_id, event["event_id"]), 20)
    assert push_service.attempts_of(down) == [500, 500, 201]
    assert push_service.attempts_of(fine) == [201]


def test_other_client_errors_fail_for_good_at_once(push_app, push_service, worker):
    app, notifications, hub, _ = push_app
    refused, fine = push_service.browser(answers=[403]), push_service.browser()
    subscribe(app, notifications, "alice", refused)
    subscribe(app, notifications, "alice", fine)
    with worker(app):
        send_and_finish(app, notifications, hub, comment(["alice"]))
    assert push_service.attempts_of(refused) == [403]  # not retried
    assert push_service.attempts_of(fine) == [201]
    with app.app_context():
        (letter,) = reliability.dead_letters()
        assert letter["error"].startswith("PushRejected: ")
        assert "403" in letter["error"] and "VAPID keys" in letter["error"]
        assert len(notifications.push_subscriptions.for_users(["alice"])) == 2  # kept


def test_opt_outs_of_webpush_are_skipped(push_app, push_service, worker):
    app, notifications, hub, _ = push_app
    alice, bob, carol = push_service.browser(), push_service.browser(), push_service.browser()
    for user, browser in [("alice", alice), ("bob", bob), ("carol", carol)]:
        subscribe(app, notifications, user, browser)
    with app.app_context():
        notifications.preferences.opt_out("bob", "comment", "webpush")
        notifications.preferences.opt_out("carol", "comment", "inbox")  # another channel
        notifications.preferences.opt_out("carol", "message", "webpush")  # another type
    with worker(app):
        send_and_finish(app, notifications, hub, comment(["alice", "bob", "carol"]))
    assert len(push_service.payloads(alice)) == 1
    assert push_service.payloads(bob) == [] and push_service.attempts_of(bob) == []
    assert len(push_service.payloads(carol)) == 1


def test_broadcast_events_only_with_broadcast_true(push_app, push_service):
    app, notifications, _, consumer = push_app
    alice, bob = push_service.browser(), push_service.browser()
    subscribe(app, notifications, "alice", alice)
    subscribe(app, notifications, "bob", bob)
    with app.app_context():
        notifications.preferences.opt_out("bob", "*", "webpush")
        assert consumer(comment([])) == 0
        assert push_service.attempts == []
        assert WebPushConsumer(broadcast=True)(comment([], title="to all")) == 1
    assert [p["title"] for p in push_service.payloads(alice)] == ["to all"]
    assert push_service.payloads(bob) == []


def test_large_events_are_cut_to_fit_the_push_limit(push_app, push_service):
    app, notifications, _, consumer = push_app
    browser = push_service.browser()
    subscribe(app, notifications, "alice", browser)
    body = "é" * 5000  # two UTF-8 bytes each
    with app.app_context():
        consumer(comment(["alice"], body=body, icon="/i.png", blob="x" * 3000))
        consumer(comment(["alice"], title="t" * 5000, body="", blob="y" * 100))
        consumer(comment(["alice"], title="short", blob="z" * 4000))
    cut_body, cut_title, cut_data = push_service.payloads(browser)
    for payload in (cut_body, cut_title, cut_data):
        size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
        assert size <= consumer.max_payload_bytes
        assert payload["truncated"] is True
        assert set(payload["data"]) == {"event_id", "event_type", "sender"}
    assert cut_body["body"].endswith("…") and body.startswith(cut_body["body"][:-1])
    assert len(cut_body["body"]) > 1500 and cut_body["icon"] == "/i.png"
    assert cut_title["title"].endswith("…") and len(cut_title["title"]) > 3000
    assert (cut_data["title"], cut_data["body"]) == ("short", "Nice post!")
    small = comment(["alice"], blob="x" * 100)
    assert "truncated" not in json.loads(consumer.encode_payload(small))


# -- bad input: clear errors, nothing lost ----------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"NOTIFICATIONS_VAPID_PRIVATE_KEY": None}, "NOTIFICATIONS_VAPID_PRIVATE_KEY is not set"),
        ({"NOTIFICATIONS_VAPID_PRIVATE_KEY": "not a key"}, "is not a VAPID private key"),
        ({"NOTIFICATIONS_VAPID_CLAIMS_SUB": None}, "NOTIFICATIONS_VAPID_CLAIMS_SUB must be"),
        ({"NOTIFICATIONS_VAPID_CLAIMS_SUB": "admin@example.com"}, "'mailto:'"),
        (
            {"NOTIFICATIONS_VAPID_PUBLIC_KEY": generate_vapid_keys()[1]},
            "NOTIFICATIONS_VAPID_PUBLIC_KEY does not belong to NOTIFICATIONS_VAPID_PRIVATE_KEY",
        ),
    ],
)
def test_bad_vapid_settings_raise_configuration_error(push_app, push_service, config, message):
    app, notifications, _, consumer = push_app
    subscribe(app, notifications, "alice", push_service.browser())
    app.config.update(config)
    with app.app_context(), pytest.raises(ConfigurationError, match=re.escape(message)):
        consumer(comment(["alice"]))
    assert push_service.attempts == []


def test_missing_keys_leave_a_dead_letter_naming_the_setting(push_app, push_service, worker):
    app, notifications, hub, _ = push_app
    browser = push_service.browser()
    subscribe(app, notifications, "alice", browser)
    app.config["NOTIFICATIONS_VAPID_PRIVATE_KEY"] = None
    event = comment(["alice"])
    with worker(app):
        send_and_finish(app, notifications, hub, event)
    with app.app_context():
        (letter,) = reliability.dead_letters()
        assert json.loads(letter["event"])["event_id"] == event["event_id"]
        assert "ConfigurationError: NOTIFICATIONS_VAPID_PRIVATE_KEY is not set" in letter["error"]


def test_an_invalid_stored_subscription_is_reported_and_the_others_served(push_app, push_service):
    app, notifications, _, consumer = push_app
    fine = push_service.browser()
    subscribe(app, notifications, "alice", fine)
    with app.app_context():
        engine = get_state(app).engine
        with engine.begin() as conn:  # written behind the API's back
            bad_id = conn.execute(
                table.insert().values(
                    recipient="alice", endpoint=push_service.origin + "/push/bad",
                    p256dh="AAAA", auth="AAAA", created_at=time.time(),
                )
            ).inserted_primary_key[0]  # fmt: skip
        with pytest.raises(
            InvalidQueryError, match=rf"stored push subscription {bad_id}: keys\.p256dh"
        ):
            consumer(comment(["alice"]))
    assert len(push_service.payloads(fine)) == 1


def test_an_unreachable_push_service_is_retried(push_app):
    app, notifications, _, consumer = push_app
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    browser = Browser(f"http://127.0.0.1:{port}/push/x")
    subscribe(app, notifications, "alice", browser)
    with app.app_context(), pytest.raises(PushServiceUnavailable, match="out of reach") as info:
        consumer(comment(["alice"]))
    assert isinstance(info.value, consumer.retry_for) and isinstance(info.value, ConnectionError)
    assert not isinstance(PushRejected("x"), Consumer.retry_for)


def test_store_upserts_by_endpoint_and_checks_its_input(push_app, push_service):
    app, notifications, _, _ = push_app
    store = notifications.push_subscriptions
    browser = push_service.browser()
    with app.app_context():
        sub_id, created = store.add("alice", browser.subscription())
        assert created is True
        renewed = Browser(browser.endpoint)  # same endpoint, new keys
        # Someone else cannot take the endpoint over without its keys...
        with pytest.raises(PushSubscriptionConflict, match="another user") as info:
            store.add(7, renewed.subscription())
        assert isinstance(info.value, ValueError)
        assert [s.recipient for s in store.all()] == ["alice"]
        # ...its owner's browser may renew them...
        assert store.add("alice", renewed.subscription()) == (sub_id, False)
        # ...and the same browser (same keys) moves to whoever signs in on it.
        assert store.add(7, renewed.subscription()) == (sub_id, False)
        (stored,) = store.for_users(["7"])
        assert stored.info() == {
            "endpoint": browser.endpoint,
            "keys": renewed.subscription()["keys"],
        }
        assert store.for_users(["alice"]) == []
        assert store.remove("alice", browser.endpoint) is False  # not hers
        assert store.remove("7", browser.endpoint) is True
        assert store.all() == []
        bad = browser.subscription()
        bad["keys"]["auth"] = "AAAA"  # 3 bytes
        with pytest.raises(InvalidQueryError, match=r"keys\.auth") as info:
            store.add("alice", bad)
        assert isinstance(info.value, ValueError)
        with pytest.raises(InvalidQueryError, match="user id"):
            store.add("", browser.subscription())
        assert store.all() == []


# -- the HTTP API ------------------------------------------------------------------------


def test_public_key_endpoint(push_app, make_app, vapid_keys):
    app, _, _, _ = push_app
    response = app.test_client().get("/notifications/push-subscriptions/key")
    assert response.status_code == 200 and response.json == {"public_key": vapid_keys[1]}
    # Derived from the private key when the public key is not set.
    app.config["NOTIFICATIONS_VAPID_PUBLIC_KEY"] = None
    assert app.test_client().get("/notifications/push-subscriptions/key").json == {
        "public_key": vapid_keys[1]
    }
    bare = make_app()
    Notifications(bare)
    response = bare.test_client().get("/notifications/push-subscriptions/key")
    assert response.status_code == 404 and "not configured" in response.json["error"]


def _valid_subscription():
    return Browser("https://push.example.com/send/abc").subscription()


def _with(keys=None, **fields):
    sub = _valid_subscription()
    sub.update(fields)
    sub["keys"].update(keys or {})
    return sub


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([1, 2], "JSON object"),
        (_with(endpoint="ftp://push.example.com/x"), "endpoint"),
        (_with(endpoint="https:///no-host"), "endpoint"),
        (_with(endpoint=None), "endpoint"),
        (_with(endpoint="https://p.example.com/" + "x" * 2100), "endpoint"),
        (_with(keys={"p256dh": "not base64!"}), "keys.p256dh"),
        (_with(keys={"p256dh": b64url(b"\x04" + b"\x01" * 64)}), "keys.p256dh"),  # off the curve
        (_with(keys={"p256dh": b64url(os.urandom(33))}), "keys.p256dh"),  # compressed length
        (_with(keys={"auth": b64url(os.urandom(12))}), "keys.auth"),
        (_with(keys={"auth": 16}), "keys.auth"),
        ({"endpoint": "https://push.example.com/x"}, "keys"),
    ],
)
def test_post_rejects_a_bad_subscription_naming_the_field(push_app, body, field):
    app, notifications, _, _ = push_app
    response = app.test_client().post(
        "/notifications/push-subscriptions", json=body, headers={"X-User": "alice"}
    )
    assert response.status_code == 400
    assert field in response.json["error"]
    with app.app_context():
        assert notifications.push_subscriptions.all() == []


def test_post_and_delete_subscriptions(push_app):
    app, notifications, _, _ = push_app
    client = app.test_client()
    url = "/notifications/push-subscriptions"
    sub = _valid_subscription()
    alice, bob = {"X-User": "alice"}, {"X-User": "bob"}

    assert client.post(url, json=sub).status_code == 401
    assert client.post(url, json=sub).json == {"error": "authentication is required"}
    response = client.post(url, data=json.dumps(sub), headers=alice)  # no JSON content type
    assert response.status_code == 415 and "application/json" in response.json["error"]
    response = client.post(url, data="{", headers=alice, content_type="application/json")
    assert response.status_code == 400

    created = client.post(url, json=sub, headers=alice)
    assert created.status_code == 201
    assert created.json == {"id": created.json["id"], "endpoint": sub["endpoint"]}
    again = client.post(url, json=sub, headers=alice)
    assert again.status_code == 200 and again.json["id"] == created.json["id"]
    with app.app_context():
        (stored,) = notifications.push_subscriptions.for_users(["alice"])
        assert stored.info() == {"endpoint": sub["endpoint"], "keys": sub["keys"]}

    assert client.delete(url, json={"endpoint": sub["endpoint"]}).status_code == 401
    response = client.delete(url, data="endpoint=x", headers=alice)
    assert response.status_code == 415
    assert client.delete(url, json={}, headers=alice).status_code == 400
    assert client.delete(url, json={"endpoint": sub["endpoint"]}, headers=bob).status_code == 404
    response = client.delete(url, json={"endpoint": sub["endpoint"]}, headers=alice)
    assert response.status_code == 204 and response.data == b""
    assert client.delete(url, json={"endpoint": sub["endpoint"]}, headers=alice).status_code == 404
    with app.app_context():
        assert notifications.push_subscriptions.all() == []


def test_service_worker_and_js_client_are_served(push_app):
    app, _, _, _ = push_app
    client = app.test_client()
    with client.get("/notifications/service-worker.js") as worker_js:
        text = worker_js.get_data(as_text=True)
    assert worker_js.status_code == 200
    assert worker_js.mimetype == "text/javascript"
    assert worker_js.headers["Service-Worker-Allowed"] == "/"
    assert worker_js.headers["Cache-Control"] == "no-cache"
    assert 'addEventListener("push"' in text and "showNotification" in text
    assert 'addEventListener("notificationclick"' in text and "openWindow" in text
    with client.get("/notifications/static/flask_notifications.js") as client_js:
        text = client_js.get_data(as_text=True)
    assert client_js.status_code == 200 and client_js.mimetype == "text/javascript"
    for snippet in ("enablePush", "disablePush", "pushManager.subscribe", "userVisibleOnly"):
        assert snippet in text
    assert "connect: connect" in text and "badge: badge" in text  # the old API stays


# -- flask notifications vapid-keys ------------------------------------------------------


def test_vapid_keys_command_prints_working_config(make_app, tmp_path, push_service):
    app = make_app()
    Notifications(app)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["notifications", "vapid-keys"])
    assert result.exit_code == 0, result.output
    config: dict[str, Any] = {}
    exec(result.stdout, {}, config)  # the printed lines are Python config
    assert set(config) == {"NOTIFICATIONS_VAPID_PRIVATE_KEY", "NOTIFICATIONS_VAPID_PUBLIC_KEY"}
    assert len(unb64url(config["NOTIFICATIONS_VAPID_PUBLIC_KEY"])) == 65
    assert len(unb64url(config["NOTIFICATIONS_VAPID_PRIVATE_KEY"])) == 32
    second = runner.invoke(args=["notifications", "vapid-keys"]).stdout
    assert second != result.stdout  # a new pair each time

    push_service.public_key = config["NOTIFICATIONS_VAPID_PUBLIC_KEY"]  # k must be this key
    configured = make_app(
        NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'keys.sqlite'}",
        NOTIFICATIONS_VAPID_CLAIMS_SUB=SUB,
        **LOOPBACK,
        **config,
    )
    notifications = Notifications(configured)
    browser = push_service.browser()
    subscribe(configured, notifications, "alice", browser)
    with configured.app_context():
        assert WebPushConsumer()(comment(["alice"], title="signed")) == 1
        get_state(configured).engine.dispose()
    assert [p["title"] for p in push_service.payloads(browser)] == ["signed"]
    key = configured.test_client().get("/notifications/push-subscriptions/key").json
    assert key == {"public_key": config["NOTIFICATIONS_VAPID_PUBLIC_KEY"]}


def test_the_push_subscriptions_table_lives_with_the_inbox(push_app):
    app, notifications, _, _ = push_app
    with app.app_context():
        notifications.inbox.create_tables()
        engine = get_state(app).engine
        names = sqlalchemy.inspect(engine).get_table_names()
    assert "flask_notification_push_subscriptions" in names


# -- the JS client and the service worker in headless Chromium -------------------------

_PUSH_MANAGER_STUB = """
(() => {
  // Chromium's own push service (FCM) is out of reach here: subscribe() hands
  // out the test's browser-like subscription instead, and records its options.
  window.__push = { calls: [], sub: null, json: null, unsubscribed: false };
  PushManager.prototype.getSubscription = function () {
    return Promise.resolve(window.__push.sub);
  };
  PushManager.prototype.subscribe = function (options) {
    var key = new Uint8Array(options.applicationServerKey);
    window.__push.calls.push({ userVisibleOnly: options.userVisibleOnly, key: Array.from(key) });
    var json = window.__push.json;
    window.__push.sub = {
      endpoint: json.endpoint,
      options: { applicationServerKey: key.buffer },
      toJSON: function () { return json; },
      unsubscribe: function () {
        window.__push.sub = null;
        window.__push.unsubscribed = true;
        return Promise.resolve(true);
      },
    };
    return Promise.resolve(window.__push.sub);
  };
})();
"""


@pytest.fixture
def served_push_app(push_app):
    """``push_app`` served over HTTP on 127.0.0.1 (a secure context for
    service workers), with a page that loads the JS client."""
    from werkzeug.serving import make_server

    app = push_app[0]
    app.add_url_rule(
        "/page",
        "page",
        lambda: '<script src="/notifications/static/flask_notifications.js"></script>',
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", push_app
    server.shutdown()
    server.server_close()


def test_enable_push_subscribes_and_the_service_worker_shows_pushes(
    chromium, served_push_app, push_service, vapid_keys
):
    base, (app, notifications, _, consumer) = served_push_app
    browser = push_service.browser()
    context = chromium.new_context(extra_http_headers={"X-User": "alice"})
    context.grant_permissions(["notifications"], origin=base)
    context.add_init_script(_PUSH_MANAGER_STUB)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    registrations: list[dict[str, Any]] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda params: registrations.extend(params["registrations"]),
    )
    cdp.send("ServiceWorker.enable")
    page.goto(base + "/page")
    page.evaluate("json => { window.__push.json = json; }", browser.subscription())

    endpoint = page.evaluate("FlaskNotifications.enablePush().then(s => s.endpoint)")
    assert endpoint == browser.endpoint
    (call,) = page.evaluate("window.__push.calls")
    assert call == {"userVisibleOnly": True, "key": list(unb64url(vapid_keys[1]))}
    with app.app_context():
        (stored,) = notifications.push_subscriptions.for_users(["alice"])
        assert stored.info()["keys"] == browser.subscription()["keys"]
        assert consumer(comment(["alice"], icon="/static/c.png", url="/posts/12", n=1)) == 1
    (payload,) = push_service.payloads(browser)  # what the push service delivers

    # Hand the decrypted payload to the real service worker, as the browser would.
    scope = base + "/notifications/"
    registration = wait_for(lambda: [r for r in registrations if r["scopeURL"] == scope])[0]
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": base, "registrationId": registration["registrationId"],
         "data": json.dumps(payload)},
    )  # fmt: skip
    shown_js = """navigator.serviceWorker.getRegistration("/notifications/")
        .then(r => r.getNotifications())
        .then(ns => ns.map(n => ({title: n.title, body: n.body, icon: n.icon, data: n.data})))"""
    shown = wait_for(lambda: page.evaluate(shown_js))
    assert shown == [
        {
            "title": "New comment",
            "body": "Nice post!",
            "icon": base + "/static/c.png",
            "data": dict(payload["data"], url="/posts/12", client_action=None),
        }
    ]

    assert page.evaluate("FlaskNotifications.disablePush()") is True
    assert page.evaluate("window.__push.unsubscribed") is True
    with app.app_context():
        assert notifications.push_subscriptions.for_users(["alice"]) == []
    assert page.evaluate("FlaskNotifications.disablePush()") is False  # nothing left
    context.close()


def test_enable_push_fails_clearly_without_permission(chromium, served_push_app):
    base, (app, notifications, _, _) = served_push_app
    context = chromium.new_context(extra_http_headers={"X-User": "alice"})
    context.add_init_script(_PUSH_MANAGER_STUB)
    page = context.new_page()
    page.goto(base + "/page")
    message = page.evaluate(
        "FlaskNotifications.enablePush().then(() => 'subscribed', e => e.message)"
    )
    assert message.startswith("notifications are not allowed")
    with app.app_context():
        assert notifications.push_subscriptions.all() == []
    context.close()
