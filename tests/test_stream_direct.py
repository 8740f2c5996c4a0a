"""Direct writes (flask_notifications/stream/_direct.py): under ``gunicorn -k
gevent`` and ``gevent.pywsgi``, the dispatcher writes frames to the streams'
sockets itself, and falls back to a stream's backlog when the kernel's buffer
is full. Checked with real servers, a raw client that checks the chunked
framing byte by byte, and ``http.client`` (through ``urllib``)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest

from flask_notifications import Event

from .conftest import wait_for
from .test_streaming import INBOX, NEWS, ev, stream, titles

#: Events of 30 KB: 300 of them (9 MB) are more than the kernel's buffers
#: hold (4 MB at most for the server's send buffer here, a 4 KB receive
#: buffer on the client), so what a client does not read waits in the backlog.
PADDING = "x" * 30_000
COUNT = 300


def counts(base: str) -> dict[str, int]:
    with urllib.request.urlopen(base + "/streams") as response:
        return json.load(response)


@pytest.fixture(params=["serve", "gunicorn"])
def server(request, stream_process):  # type: ignore[no-untyped-def]
    """``server(**env)``: tests/stream_app.py under examples/serve.py
    (``gevent.pywsgi``) or ``gunicorn -k gevent``; its base URL."""

    def start(**env: str) -> str:
        return stream_process(request.param, **env)[0]

    return start


def publish_paced(publish, client, count: int) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """Publish ``count`` big events for alice, never more than 10 ahead of what
    ``client`` has read (a busy machine must not make it a slow client);
    return what it read."""
    received: list[dict[str, str]] = []

    def read() -> None:
        while len(received) < count:
            event = client.next_event(20)
            if event is None:
                return
            received.append(event)

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(count):
        deadline = time.monotonic() + 20
        while len(received) < i - 10 and reader.is_alive() and time.monotonic() < deadline:
            time.sleep(0.001)
        publish(INBOX, ev(f"n{i}", ["alice"], padding=PADDING))
    reader.join(30)
    return received


def intact(events: list[dict[str, str]]) -> list[str]:
    """The titles of big events, each checked whole."""
    for event in events:
        assert len(json.loads(event["data"])["padding"]) == len(PADDING)
    return titles(events)


def test_streams_are_written_directly_and_framed_right(server, publish):
    base = server()
    with stream(base, user="alice") as alice, stream(base, "News") as anonymous:
        assert alice.headers["transfer-encoding"] == "chunked"
        wait_for(lambda: counts(base) == {"open": 2, "direct": 2})
        sent = ev("hello", ["alice"], event_type="chat", data={"k": [1]})
        history_id = publish(INBOX, sent)
        publish(NEWS, ev("news"))
        received = alice.next_event()
        assert received["id"] == history_id and received["event"] == "chat"
        assert Event.from_json(received["data"]) == sent
        assert titles(anonymous.events(1)) == ["news"]
        with pytest.raises(TimeoutError):
            alice.next_event(timeout=0.3)  # the broadcast was not for her: nothing else


def test_an_http_10_client_gets_a_response_without_chunks(server, publish):
    base = server()
    with stream(base, user="alice", version="1.0") as client:
        assert "transfer-encoding" not in client.headers  # ends when the connection closes
        wait_for(lambda: counts(base)["direct"] == 1)
        publish(INBOX, ev("one", ["alice"]))
        publish(INBOX, ev("two", ["alice"]))
        assert titles(client.events(2)) == ["one", "two"]


def test_a_standard_http_client_reads_direct_chunks(server, publish):
    """``http.client`` decodes the chunked body strictly (a bad chunk size or
    a missing CRLF raises)."""
    base = server()
    request = urllib.request.Request(
        base + "/notifications/stream/Inbox", headers={"X-User": "alice"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        while response.readline() != b"event: ready\n":
            pass
        assert response.readline() == b"data: {}\n"
        wait_for(lambda: counts(base)["direct"] == 1)
        for i in range(3):
            publish(INBOX, ev(f"n{i}", ["alice"]))
        data = []
        while len(data) < 3:
            line = response.readline()
            if line.startswith(b"data: "):
                data.append(json.loads(line[6:])["title"])
    assert data == ["n0", "n1", "n2"]


def test_a_full_kernel_buffer_falls_back_to_the_backlog_without_loss(server, publish):
    base = server()
    slow = stream(base, user="alice", rcvbuf=4096)  # reads nothing for now
    healthy = stream(base, user="alice")
    try:
        wait_for(lambda: counts(base)["direct"] == 2)
        received = publish_paced(publish, healthy, COUNT)
        assert intact(received) == [f"n{i}" for i in range(COUNT)]
        assert counts(base) == {"open": 2, "direct": 2}  # the slow one waits, not cut
        slow.sock.settimeout(20)
        assert intact(slow.events(COUNT, 20)) == [f"n{i}" for i in range(COUNT)]
        publish(INBOX, ev("after", ["alice"]))
        assert titles(slow.events(1)) == titles(healthy.events(1)) == ["after"]
    finally:
        slow.close()
        healthy.close()


def test_a_client_that_stops_reading_mid_frame_is_cut_and_others_are_unharmed(server, publish):
    base = server(STREAM_QUEUE="20")
    stalled = stream(base, user="alice", rcvbuf=4096)  # never reads again
    healthy = stream(base, user="alice")
    other = stream(base, user="bob")
    try:
        wait_for(lambda: counts(base)["direct"] == 3)
        received = publish_paced(publish, healthy, COUNT)
        assert intact(received) == [f"n{i}" for i in range(COUNT)]
        # Its frames half-written, the stalled stream is cut and unregistered.
        wait_for(lambda: counts(base) == {"open": 2, "direct": 2})
        publish(INBOX, ev("for bob", ["bob"]))
        assert titles(other.events(1)) == ["for bob"]
        late = []
        stalled.sock.settimeout(10)
        while (event := stalled.next_event(timeout=10)) is not None:
            late.append(event)
        assert len(late) < COUNT  # cut, not queued for
        assert intact(late) == [f"n{i}" for i in range(len(late))]  # what it got is whole
        assert not stalled.complete  # cut: the response did not end as if complete
    finally:
        for client in (stalled, healthy, other):
            client.close()


def test_without_gevent_streams_go_through_the_wsgi_iterator(memory_stream):
    """werkzeug's threaded server (and the test client): no direct writes."""
    with stream(memory_stream.base, user="alice"):
        with memory_stream.app.app_context():
            dispatcher = memory_stream.notifications.dispatcher
            assert not dispatcher.direct
            assert dispatcher.stream_count == 1 and dispatcher.direct_count == 0


def test_the_setting_turns_direct_writes_off(stream_process, publish):
    base, _ = stream_process("gunicorn", STREAM_DIRECT="0")
    with stream(base, user="alice") as client:
        time.sleep(0.2)  # a direct stream would be direct by now
        assert counts(base) == {"open": 1, "direct": 0}
        publish(INBOX, ev("queued", ["alice"]))
        assert titles(client.events(1)) == ["queued"]


def test_a_batch_of_mixed_messages_reaches_each_stream_in_order(make_app):
    """Messages read together are routed together: runs of broadcasts,
    targeted events and unread counts, each stream's share in order."""
    from flask_notifications import Notifications

    app = make_app(NOTIFICATIONS_BACKEND="flask_notifications.pubsub.memory_pubsub.MemoryPubSub")
    notifications = Notifications(app)
    hub = notifications.create_hub("News", public=True)
    with app.app_context():
        dispatcher = notifications.dispatcher
        alice, _ = dispatcher.open(hub.hub_id, "alice")
        bob, _ = dispatcher.open(hub.hub_id, "bob")
        batch = []
        for number, (title, recipients) in enumerate(
            [("b1", []), ("b2", []), ("a1", ["alice"]), ("b3", []), ("b4", []), ("c1", ["bob"])],
            1,
        ):
            batch.append((hub.hub_id, str(number), ev(title, recipients).to_json()))
            if number == 3:
                batch.append((hub.hub_id, None, json.dumps({"unread_counts": {"bob": 7}})))
        with dispatcher._routing:
            dispatcher._route(batch)
        shown = {}
        for name, stream in (("alice", alice), ("bob", bob)):
            frames = stream.wait(timeout=1)
            shown[name] = [
                line[6:]
                for _, data in frames
                for line in data.decode().splitlines()
                if line.startswith("data: ")
            ]
        notifications.shutdown()
    assert titles([{"data": d} for d in shown["alice"]]) == ["b1", "b2", "a1", "b3", "b4"]
    bob_titles = [json.loads(d).get("title") or json.loads(d)["unread"] for d in shown["bob"]]
    assert bob_titles == ["b1", "b2", 7, "b3", "b4", "c1"]


def test_direct_chunks_pass_through_nginx(stream_process, publish):
    """nginx (examples/deploy/nginx.conf: HTTP/1.1 upstream, kept alive, no
    buffering) decodes the upstream's chunks and refuses a malformed one."""
    import os

    from flask_notifications.testing import NginxServer, find_nginx

    from .conftest import ROOT

    if find_nginx() is None:
        if os.environ.get("FLASK_NOTIFICATIONS_REQUIRE_NGINX"):
            pytest.fail("nginx is required (run-tests.sh installs it with apt-get)")
        pytest.skip("no nginx")
    base, _ = stream_process("gunicorn")
    upstream = base.removeprefix("http://")
    with NginxServer(ROOT / "examples" / "deploy" / "nginx.conf", [upstream]) as nginx:
        slow = stream(nginx.url, user="alice", rcvbuf=4096)  # nginx buffers for it, then waits
        healthy = stream(nginx.url, user="alice")
        try:
            wait_for(lambda: counts(base)["direct"] == 2)
            received = publish_paced(publish, healthy, 100)
            assert intact(received) == [f"n{i}" for i in range(100)]
            slow.sock.settimeout(20)
            assert intact(slow.events(100, 20)) == [f"n{i}" for i in range(100)]
        finally:
            slow.close()
            healthy.close()
        assert "upstream" not in nginx.error_log, nginx.error_log


def test_direct_writes_only_where_the_server_is_known_and_the_body_untouched(tmp_path):
    """The checks of flask_notifications/stream/_direct.py:connection, on the
    servers' real response objects: a plain gevent socket behind gunicorn's
    Response or gevent.pywsgi's handler that wrote our head unchanged."""
    import ssl
    import subprocess

    from gevent import socket as gsocket
    from gevent import ssl as gssl
    from gevent.pywsgi import WSGIHandler
    from gunicorn.http.wsgi import Response as GunicornResponse

    from flask_notifications.stream import _direct

    class Config:
        protocol = "http"

    def gunicorn(sock, *, sent=10, headers_sent=True, headers=()):  # type: ignore[no-untyped-def]
        owner = GunicornResponse(None, sock, Config())
        owner.headers_sent, owner.sent, owner.chunked = headers_sent, sent, True
        owner.headers = [("Content-Type", "text/event-stream"), *headers]
        sink = _direct.Sink()
        sink.write = owner.write
        return sink

    def pywsgi(sock, *, code=200):  # type: ignore[no-untyped-def]
        owner = WSGIHandler.__new__(WSGIHandler)
        owner.socket, owner.code, owner.headers_sent = sock, code, True
        owner.response_use_chunked = False
        owner.response_headers = [(b"Content-Type", b"text/event-stream")]
        sink = _direct.Sink()
        sink.write = owner.write
        return sink

    plain = gsocket.socket()
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
         "-days", "1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = gssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    tls = context.wrap_socket(gsocket.socket(), server_side=True, do_handshake_on_connect=False)
    try:
        found = _direct.connection(gunicorn(plain), 10)
        assert found is not None and found[0] is plain and found[2] is True
        found = _direct.connection(pywsgi(plain), 10)
        assert found is not None and found[2] is False  # HTTP/1.0: no chunks
        assert _direct.connection(gunicorn(plain, sent=12), 10) is None  # body changed
        assert _direct.connection(gunicorn(plain, headers_sent=False), 10) is None  # held back
        compressed = gunicorn(plain, headers=[("Content-Encoding", "gzip")])
        assert _direct.connection(compressed, 10) is None
        assert _direct.connection(gunicorn(tls), 10) is None  # TLS: never clear text
        assert _direct.connection(pywsgi(tls), 10) is None
        assert _direct.connection(pywsgi(plain, code=500), 10) is None
        werkzeug = _direct.Sink()
        werkzeug.write = lambda data: None  # a function: no server object behind it
        assert _direct.connection(werkzeug, 10) is None
        assert _direct.connection(_direct.Sink(), 10) is None  # start_response never called
    finally:
        tls.close()
        plain.close()


def test_heartbeats_skip_streams_that_just_had_a_broadcast(make_app):
    """A broadcast since the last beat wrote to every stream reading the
    hub's broadcasts: the beat skips them (not the others), and comes back
    once the hub is quiet."""
    from flask_notifications import Notifications
    from flask_notifications.stream.framing import HEARTBEAT

    app = make_app(
        NOTIFICATIONS_BACKEND="flask_notifications.pubsub.memory_pubsub.MemoryPubSub",
        NOTIFICATIONS_HEARTBEAT=0.2,
    )
    notifications = Notifications(app)
    hub = notifications.create_hub("News", public=True)
    with app.app_context():
        dispatcher = notifications.dispatcher
        reader, _ = dispatcher.open(hub.hub_id, "alice")
        other, _ = dispatcher.open(hub.hub_id, "bob", broadcasts=False)
        for number in range(1, 11):  # a broadcast every 0.1 s for 1 s
            dispatcher.dispatch(hub.hub_id, str(number), ev(f"b{number}").to_json())
            time.sleep(0.1)
        busy = {name: s.wait(timeout=1) for name, s in (("reader", reader), ("other", other))}
        time.sleep(0.7)  # quiet
        quiet = reader.wait(timeout=1)
        notifications.shutdown()
    assert [f for _, f in busy["reader"] if f == HEARTBEAT] == []
    assert len([f for _, f in busy["reader"] if f != HEARTBEAT]) == 10
    assert len([f for _, f in busy["other"] if f == HEARTBEAT]) >= 3
    assert len([f for _, f in quiet if f == HEARTBEAT]) >= 2
