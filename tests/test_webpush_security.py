"""Web Push endpoints cannot be turned against the servers' own network (SSRF).

Only loopback addresses ever receive traffic here: private, link-local and
metadata URLs are registered only to see them refused, made-up host names
resolve through the test's own resolver (``resolver``, from test_webpush),
and "public" addresses it hands out are never connected to.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flask_notifications import (
    ConfigurationError,
    PushRejected,
    PushServiceUnavailable,
    reliability,
)
from flask_notifications.errors import PushEndpointRefused
from flask_notifications.webpush._ssrf import MAIN_PUSH_SERVICES, EndpointPolicy, is_public_address
from flask_notifications.webpush._transport import PushSession

from . import test_webpush as base
from .test_webpush import Browser, comment, send_and_finish, subscribe

# The fixtures of test_webpush (``resolver`` is autouse: no name resolves for real).
push_app, push_service, resolver, vapid_keys = (
    base.push_app, base.push_service, base.resolver, base.vapid_keys
)  # fmt: skip

URL = "/notifications/push-subscriptions"
NETWORKS = "NOTIFICATIONS_WEBPUSH_ALLOWED_NETWORKS"
HOSTS = "NOTIFICATIONS_WEBPUSH_ALLOWED_HOSTS"
PUBLIC = "93.184.215.14"  # handed out by the fake resolver, never connected to


# -- local servers that misbehave -------------------------------------------------------


class Listener:
    """A TCP port on a loopback address that never accepts: connections wait
    in its backlog (the kernel completes them), and nothing is ever answered."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        """How many connections reached it so far."""
        self.sock.setblocking(False)
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self) -> None:
        self.sock.close()


class Scripted:
    """An HTTP server on 127.0.0.1 that answers every POST the same way."""

    def __init__(self, status: int, headers: dict[str, str] | None = None, body: bytes = b""):
        self.requests: list[str] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                scripted.requests.append(self.path)
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Dripper:
    """Accepts connections and sends one byte every 0.2 s, forever: each read
    gets data in time, the answer never ends."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            while not self.stop.wait(0.2):
                try:
                    conn.sendall(b"H")
                except OSError:
                    return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def servers():
    """Make misbehaving servers; closed at the end of the test."""
    made: list[Any] = []

    def make(kind: type, *args: Any, **kwargs: Any) -> Any:
        made.append(kind(*args, **kwargs))
        return made[-1]

    yield make
    for server in made:
        server.close()


def public_only(app) -> None:
    """The default rules: no network allowed beyond the public Internet."""
    app.config.pop(NETWORKS, None)


# -- registration ------------------------------------------------------------------------


REFUSED = [
    ("http://127.0.0.1:6379/", "must be an https URL"),
    ("http://push.example.com/send/x", "must be an https URL"),
    ("https://127.0.0.1:6379/", "not a public address"),
    ("https://169.254.169.254/latest/meta-data/", "not a public address"),
    ("https://10.0.0.1/", "not a public address"),
    ("https://192.168.1.10/push", "not a public address"),
    ("https://172.16.0.1/push", "not a public address"),
    ("https://100.64.0.1/push", "not a public address"),  # shared (carrier-grade NAT)
    ("https://0.0.0.0/push", "not a public address"),
    ("https://224.0.0.251/push", "not a public address"),  # multicast
    ("https://240.0.0.1/push", "not a public address"),  # reserved
    ("https://[::1]/push", "not a public address"),
    ("https://[::]/push", "not a public address"),
    ("https://[fe80::1]/push", "not a public address"),
    ("https://[fc00::1]/push", "not a public address"),
    ("https://[fec0::1]/push", "not a public address"),  # site-local
    ("https://[ff02::1]/push", "not a public address"),
    ("https://[::ffff:127.0.0.1]/push", "not a public address"),  # IPv4-mapped
    ("https://[::ffff:169.254.169.254]/push", "not a public address"),
    ("https://[2002:7f00:1::1]/push", "not a public address"),  # 6to4 of 127.0.0.1
    ("https://[64:ff9b::a9fe:a9fe]/push", "not a public address"),  # NAT64 of 169.254...
    ("https://localhost/push", "not a public address"),
    ("https://internal.example.test/push", "not a public address"),
    ("https://mixed.example.test/push", "not a public address"),
    ("https://mapped.example.test/push", "not a public address"),
    ("https://nowhere.example.test/push", "does not resolve"),
    ("https://user:secret@push.example.com/send/x", "user name or password"),
    ("https://b\u00fccher.example/push", "ASCII"),
    ("https://" + "a" * 64 + ".example/push", "not a valid host name"),
    ("https://push..example.com/push", "not a valid host name"),
    ("https://-push.example.com/push", "not a valid host name"),
]


@pytest.fixture
def names(resolver):
    resolver.names.update(
        {
            "internal.example.test": ["10.1.2.3"],
            "mixed.example.test": [PUBLIC, "10.0.0.1"],
            "mapped.example.test": ["::ffff:169.254.169.254"],
        }
    )
    return resolver


@pytest.mark.parametrize(("endpoint", "reason"), REFUSED)
def test_registration_refuses_endpoints_outside_the_public_internet(
    push_app, push_service, names, endpoint, reason
):
    app, notifications, _, _ = push_app
    public_only(app)
    sub = Browser(endpoint).subscription()
    response = app.test_client().post(URL, json=sub, headers={"X-User": "mallory"})
    assert response.status_code == 400, response.json
    assert response.json["error"].startswith("endpoint") and reason in response.json["error"]
    with app.app_context():
        with pytest.raises(PushEndpointRefused, match=reason) as info:
            notifications.push_subscriptions.add("mallory", sub)
        assert isinstance(info.value, ValueError)
        assert notifications.push_subscriptions.all() == []
    assert push_service.attempts == []


def test_a_public_https_endpoint_is_accepted(push_app, resolver):
    app, notifications, _, _ = push_app
    public_only(app)
    sub = Browser("https://push.example.com/send/abc").subscription()
    response = app.test_client().post(URL, json=sub, headers={"X-User": "alice"})
    assert response.status_code == 201
    assert resolver.calls == ["push.example.com"]  # resolved; never connected to


def test_allowed_networks_open_only_those_networks(push_app, push_service, names):
    app, notifications, _, _ = push_app  # NETWORKS = ["127.0.0.0/8"]
    client = app.test_client()
    alice = {"X-User": "alice"}
    ok = client.post(URL, json=push_service.browser().subscription(), headers=alice)
    assert ok.status_code == 201  # http://127.0.0.1:<port>
    for endpoint in ("https://10.0.0.1/x", "https://[::1]/x", "https://169.254.169.254/x"):
        response = client.post(URL, json=Browser(endpoint).subscription(), headers=alice)
        assert response.status_code == 400 and "not a public address" in response.json["error"]
    response = client.post(
        URL, json=Browser("http://push.example.com/x").subscription(), headers=alice
    )
    assert response.status_code == 400 and NETWORKS in response.json["error"]  # http: only there


def test_allowed_hosts_restrict_endpoints_to_push_services(push_app, resolver):
    app, notifications, _, _ = push_app
    public_only(app)
    app.config[HOSTS] = list(MAIN_PUSH_SERVICES)
    services = [
        "fcm.googleapis.com",
        "updates.push.services.mozilla.com",
        "wns2-by3p.notify.windows.com",
        "web.push.apple.com",
        "evil.example.test",
    ]
    resolver.names.update({host: [PUBLIC] for host in services})
    client = app.test_client()
    for host in services[:4]:
        sub = Browser(f"https://{host}/send/abc").subscription()
        assert client.post(URL, json=sub, headers={"X-User": "alice"}).status_code == 201
    for endpoint in (
        "https://evil.example.test/send",
        "https://notfcm.googleapis.com/send",
        "https://fcm.googleapis.com.evil.example.test/send",
    ):
        sub = Browser(endpoint).subscription()
        response = client.post(URL, json=sub, headers={"X-User": "alice"})
        assert response.status_code == 400 and HOSTS in response.json["error"]
    assert "notfcm.googleapis.com" not in resolver.calls  # refused before resolving
    app.config[HOSTS] = ["*.notify.windows.com", ".push.apple.com"]  # wildcards and dots
    policy = EndpointPolicy.from_config(app.config)
    assert policy.allowed_hosts == ("notify.windows.com", "push.apple.com")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (HOSTS, "fcm.googleapis.com"),
        (HOSTS, ["https://fcm.googleapis.com/"]),
        (NETWORKS, "127.0.0.0/8"),
        (NETWORKS, ["localhost"]),
        ("NOTIFICATIONS_WEBPUSH_MAX_SUBSCRIPTIONS", 0),
        ("NOTIFICATIONS_WEBPUSH_TIMEOUT", "5"),
        ("NOTIFICATIONS_WEBPUSH_TIMEOUT", 0),
    ],
)
def test_malformed_settings_name_the_key(push_app, push_service, key, value):
    app, notifications, _, consumer = push_app
    subscribe(app, notifications, "alice", push_service.browser())
    app.config[key] = value
    consumer.timeout = None  # the setting's
    at_registration = key != "NOTIFICATIONS_WEBPUSH_TIMEOUT"
    at_send = key != "NOTIFICATIONS_WEBPUSH_MAX_SUBSCRIPTIONS"
    with app.app_context():
        if at_registration:
            with pytest.raises(ConfigurationError, match=key):
                notifications.push_subscriptions.add("bob", push_service.browser().subscription())
        if at_send:
            with pytest.raises(ConfigurationError, match=key):
                consumer(comment(["alice"]))
    if at_registration:
        response = app.test_client().post(
            URL, json=push_service.browser().subscription(), headers={"X-User": "bob"}
        )
        assert response.status_code == 500 and "misconfigured" in response.json["error"]
    assert push_service.attempts == []


def test_is_public_address():
    public = ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
    for text in public:
        assert is_public_address(ipaddress.ip_address(text)), text
    for text, _ in REFUSED:
        host = text.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            continue
        assert not is_public_address(address), text


# -- at send time ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rebound", [["127.0.0.1"], [PUBLIC, "127.0.0.1"], ["::ffff:127.0.0.1"], ["10.0.0.1"]]
)
def test_dns_rebinding_is_refused_at_send_time(push_app, resolver, servers, caplog, rebound):
    """The host resolved to a public address when it was registered, and to a
    local one when the push is sent: refused, and nothing connects anywhere."""
    app, notifications, _, consumer = push_app
    public_only(app)
    listener = servers(Listener)  # where 127.0.0.1 would lead
    answers = iter([[PUBLIC]])
    resolver.names["push.example.test"] = lambda: next(answers, rebound)
    browser = Browser(f"https://push.example.test:{listener.port}/push/x")
    subscribe(app, notifications, "alice", browser)
    with app.app_context():
        assert consumer(comment(["alice"])) == 0
        assert notifications.push_subscriptions.all() == []  # deleted
    assert resolver.calls == ["push.example.test", "push.example.test"]  # once each
    assert listener.connections() == 0
    (record,) = [r for r in caplog.records if "push.example.test" in r.getMessage()]
    assert record.levelname == "WARNING" and "not a public address" in record.getMessage()


def test_a_push_connects_to_the_address_it_checked(push_app, push_service, resolver, servers):
    """The address checked right before the push is the one connected to: the
    host is not resolved again (the decoy at 127.0.0.2 would get it)."""
    app, notifications, _, consumer = push_app
    port = push_service.server.server_address[1]
    push_service.origin = f"http://push.example.test:{port}"
    decoy = servers(Listener, "127.0.0.2", port)
    answers = iter([["127.0.0.1"], ["127.0.0.1"]])  # registration, then the push's check
    resolver.names["push.example.test"] = lambda: next(answers, ["127.0.0.2"])
    browser = push_service.browser()
    subscribe(app, notifications, "alice", browser)
    with app.app_context():
        assert consumer(comment(["alice"])) == 1
    ((_, _, headers),) = push_service.delivered
    assert headers["host"] == f"push.example.test:{port}"
    assert resolver.calls == ["push.example.test", "push.example.test"]
    assert decoy.connections() == 0


def test_a_stored_endpoint_outside_the_allowed_hosts_is_deleted(push_app, push_service):
    app, notifications, _, consumer = push_app
    subscribe(app, notifications, "alice", push_service.browser())
    app.config[HOSTS] = ["fcm.googleapis.com"]  # narrowed after it was stored
    with app.app_context():
        assert consumer(comment(["alice"])) == 0
        assert notifications.push_subscriptions.all() == []
    assert push_service.attempts == []


def _certificates(tmp_path, name: str) -> tuple[str, str, str]:
    """A CA, and a server certificate for ``name`` it signed: (ca, cert, key) files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Flask-Notifications test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = []
    for filename, data in (
        ("ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
        ("cert.pem", cert.public_bytes(serialization.Encoding.PEM)),
        (
            "key.pem",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        ),
    ):
        (tmp_path / filename).write_bytes(data)
        files.append(str(tmp_path / filename))
    return files[0], files[1], files[2]


def test_tls_to_the_checked_address_keeps_the_host_name(tmp_path, resolver):
    """Pinned to 127.0.0.1, TLS still sends the host name (SNI), checks the
    certificate against it, and the request's Host header carries it."""
    ca, cert, key = _certificates(tmp_path, "push.example.test")
    seen: dict[str, list[str]] = {"sni": [], "host": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen["host"].append(self.headers.get("Host", ""))
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: seen["sni"].append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    resolver.names.update({"push.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]})
    policy = EndpointPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    try:
        with PushSession(policy) as session:
            url = f"https://push.example.test:{port}/push/x"
            response = session.post(url, data=b"x", verify=ca, timeout=5)
            assert response.status_code == 201
            assert seen == {"sni": ["push.example.test"], "host": [f"push.example.test:{port}"]}
            with pytest.raises(requests.exceptions.SSLError):
                session.post(f"https://other.example.test:{port}/", data=b"x", verify=ca, timeout=5)
            with pytest.raises(requests.exceptions.SSLError):  # verified by default
                session.post(url, data=b"x", timeout=5)
        assert seen["host"] == [f"push.example.test:{port}"]  # the others never got through
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_never_followed(push_app, servers, status):
    app, notifications, _, consumer = push_app
    target = servers(Listener)
    redirecting = servers(
        Scripted, status, headers={"Location": f"http://127.0.0.1:{target.port}/steal"}
    )
    subscribe(app, notifications, "alice", Browser(f"{redirecting.origin}/push/x"))
    with app.app_context(), pytest.raises(PushRejected, match="redirects are not followed"):
        consumer(comment(["alice"]))
    assert redirecting.requests == ["/push/x"] and target.connections() == 0


def test_a_redirect_is_a_dead_letter_not_a_delivery(push_app, push_service, servers, worker):
    app, notifications, hub, _ = push_app
    redirecting = servers(Scripted, 302, headers={"Location": push_service.origin + "/push/y"})
    fine = push_service.browser()
    subscribe(app, notifications, "alice", Browser(f"{redirecting.origin}/push/x"))
    subscribe(app, notifications, "alice", fine)
    with worker(app):
        send_and_finish(app, notifications, hub, comment(["alice"]))
    with app.app_context():
        (letter,) = reliability.dead_letters()
    assert letter["error"].startswith("PushRejected: 1 of 2") and " 302 " in letter["error"]
    assert len(push_service.payloads(fine)) == 1 and len(push_service.attempts) == 1


def test_push_service_text_is_printable_in_dead_letters(push_app, servers, worker):
    app, notifications, hub, _ = push_app
    body = b"bad\r\nERROR forged log line\x1b[31m red\x00\xe2\x80\xae" + b"x" * 50_000
    refusing = servers(Scripted, 400, body=body)
    subscribe(app, notifications, "alice", Browser(f"{refusing.origin}/push/x"))
    with worker(app):
        send_and_finish(app, notifications, hub, comment(["alice"]))
    with app.app_context():
        (letter,) = reliability.dead_letters()
    error = letter["error"]
    assert "bad" in error and "ERROR forged log line" in error
    assert not any(c in error for c in "\r\n\x1b\x00\u202e")
    assert len(error) < 1000


# -- time limits -------------------------------------------------------------------------


def test_silent_push_services_cannot_stall_a_worker(push_app, push_service, servers, worker):
    """Three push services accept the connection and never answer; a fourth
    works. The pushes run side by side: the working one is delivered, and the
    task ends after about one timeout, not three."""
    app, notifications, hub, consumer = push_app
    app.config["NOTIFICATIONS_WEBPUSH_TIMEOUT"] = 1
    consumer.timeout = None  # the setting's
    consumer.max_retries = 0
    silent = [servers(Listener) for _ in range(3)]
    for listener in silent:
        subscribe(app, notifications, "alice", Browser(f"http://127.0.0.1:{listener.port}/p"))
    fine = push_service.browser()
    subscribe(app, notifications, "alice", fine)

    with app.app_context():
        start = time.monotonic()
        with pytest.raises(PushServiceUnavailable, match="3 of 4 push"):
            consumer(comment(["alice"]))
        elapsed = time.monotonic() - start
    assert 0.9 < elapsed < 2.5, elapsed
    assert len(push_service.payloads(fine)) == 1
    assert [listener.connections() for listener in silent] == [1, 1, 1]

    with worker(app):
        start = time.monotonic()
        send_and_finish(app, notifications, hub, comment(["alice"], title="again"))
        elapsed = time.monotonic() - start
    assert elapsed < 4, elapsed
    assert [p["title"] for p in push_service.payloads(fine)] == ["New comment", "again"]
    with app.app_context():
        (letter,) = reliability.dead_letters()
    assert letter["error"].startswith("PushServiceUnavailable: 3 of 4")


def test_a_dripping_push_service_is_cut_at_the_deadline(push_app, servers):
    """Every read gets a byte in time, but the answer never ends: the push's
    deadline still ends it."""
    app, notifications, _, consumer = push_app
    consumer.timeout = 1
    dripper = servers(Dripper)
    subscribe(app, notifications, "alice", Browser(f"http://127.0.0.1:{dripper.port}/p"))
    with app.app_context():
        start = time.monotonic()
        with pytest.raises(PushServiceUnavailable, match="did not answer within 1 s"):
            consumer(comment(["alice"]))
    assert time.monotonic() - start < 2


# -- who owns a subscription, and how many ----------------------------------------------


def test_an_endpoint_moves_to_another_user_only_with_its_keys(push_app):
    app, notifications, _, _ = push_app
    client = app.test_client()
    browser = Browser("https://push.example.com/send/shared")
    created = client.post(URL, json=browser.subscription(), headers={"X-User": "alice"})
    assert created.status_code == 201
    forged = Browser(browser.endpoint).subscription()  # the endpoint, other keys
    response = client.post(URL, json=forged, headers={"X-User": "mallory"})
    assert response.status_code == 409 and "another user" in response.json["error"]
    with app.app_context():
        assert [s.recipient for s in notifications.push_subscriptions.all()] == ["alice"]
    # The same browser, where bob signed in: same keys, so it moves to bob.
    moved = client.post(URL, json=browser.subscription(), headers={"X-User": "bob"})
    assert moved.status_code == 200 and moved.json["id"] == created.json["id"]
    with app.app_context():
        assert [s.recipient for s in notifications.push_subscriptions.all()] == ["bob"]


@pytest.mark.parametrize("limit", [None, 3])
def test_a_user_keeps_at_most_max_subscriptions_the_oldest_go(push_app, limit):
    app, notifications, _, _ = push_app
    if limit is not None:
        app.config["NOTIFICATIONS_WEBPUSH_MAX_SUBSCRIPTIONS"] = limit
    kept = limit or 10
    client = app.test_client()
    bobs = Browser("https://push.example.com/send/bob").subscription()
    assert client.post(URL, json=bobs, headers={"X-User": "bob"}).status_code == 201
    endpoints = [f"https://push.example.com/send/{i}" for i in range(kept + 2)]
    for endpoint in endpoints:
        response = client.post(
            URL, json=Browser(endpoint).subscription(), headers={"X-User": "alice"}
        )
        assert response.status_code == 201
    with app.app_context():
        store = notifications.push_subscriptions
        assert [s.endpoint for s in store.for_users(["alice"])] == endpoints[-kept:]
        assert [s.endpoint for s in store.for_users(["bob"])] == [bobs["endpoint"]]
        # Renewing the keys of the oldest one keeps it, and nothing else goes.
        assert store.add("alice", Browser(endpoints[-kept]).subscription())[1] is False
        assert [s.endpoint for s in store.for_users(["alice"])] == endpoints[-kept:]
