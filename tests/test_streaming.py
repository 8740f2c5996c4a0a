"""Real-time streaming over real HTTP: a gevent server subprocess, a real Redis."""

from __future__ import annotations

import json
import time

import pytest

from flask_notifications import Event
from flask_notifications.event_hub import hub_id_for
from flask_notifications.pubsub.redis_pubsub import RedisPubSub

from .conftest import both_backends
from .sse_client import SSEClient

INBOX, NEWS, SECRET = hub_id_for("Inbox"), hub_id_for("News"), hub_id_for("Secret")


def ev(title, recipients=None, event_type="message", **custom):
    return Event(None, event_type, title, "body", recipients=recipients, **custom)


def stream(base, label="Inbox", user=None, headers=None, path=None, ready=True, **kw):
    """Open a stream; a first connection that opens is read up to its ``ready``
    event, so the stream is registered and whatever is published next reaches it."""
    all_headers = dict(headers or {})
    if user:
        all_headers["X-User"] = user
    client = SSEClient(base + (path or f"/notifications/stream/{label}"), all_headers, **kw)
    replaying = "Last-Event-ID" in all_headers or "lastEventId=" in (path or "")
    if ready and client.status == 200 and not replaying:
        client.wait_ready()
    return client


def titles(events):
    return [json.loads(e["data"])["title"] for e in events]


@both_backends
def test_headers_and_retry_arrive_at_once(stream_base):
    base = stream_base
    started = time.monotonic()
    with stream(base, user="alice") as client:
        assert client.status == 200
        assert client.headers["content-type"].startswith("text/event-stream")
        assert client.headers["cache-control"] == "no-cache"
        assert client.headers["x-accel-buffering"] == "no"
        with pytest.raises(TimeoutError):
            client.next_event(timeout=0.3)  # nothing published: no event...
        assert client.retry == 2000 and "ok" in client.comments  # ...but the preamble came
    assert time.monotonic() - started < 5


@both_backends
def test_frames_carry_history_id_type_and_event_json(stream_base, publish):
    base = stream_base
    with stream(base, user="alice") as client:
        event = ev(
            "hello", recipients=["alice"], event_type="chat", priority="high", data={"k": [1]}
        )
        history_id = publish(INBOX, event)
        received = client.next_event()
    assert received["id"] == history_id
    assert received["event"] == "chat"
    assert Event.from_json(received["data"]) == event
    assert json.loads(received["data"])["priority"] == "high"


@both_backends
def test_newlines_cannot_break_framing(stream_base, publish):
    base = stream_base
    with stream(base, user="alice") as client:
        tricky = ev(
            "line1\nline2\r\n\ndata: forged",
            recipients=["alice"],
            event_type="evil\nevent: x\r\n\r\ndata: y",
        )
        publish(INBOX, tricky)
        publish(INBOX, ev("after", recipients=["alice"]))
        first, second = client.events(2)
    assert first["event"] == "evilevent: xdata: y"
    assert Event.from_json(first["data"]) == tricky
    assert titles([second]) == ["after"]


@both_backends
def test_each_user_receives_only_their_events_and_broadcasts(stream_base, publish):
    base = stream_base
    with stream(base, user="alice") as alice, stream(base, user="bob") as bob:
        publish(INBOX, ev("for alice", ["alice"]))
        publish(INBOX, ev("for bob", ["bob"]))
        publish(INBOX, ev("for both", ["alice", "bob", "carol"]))
        publish(INBOX, ev("for everyone"))
        publish(NEWS, ev("other hub"))
        assert titles(alice.events(3)) == ["for alice", "for both", "for everyone"]
        assert titles(bob.events(3)) == ["for bob", "for both", "for everyone"]
        with pytest.raises(TimeoutError):
            alice.next_event(timeout=0.3)


@both_backends
def test_private_hub_needs_identity_and_authorizer(stream_base):
    base = stream_base
    with stream(base) as anonymous:
        assert anonymous.status == 401
        assert "Inbox" in json.loads(anonymous.read_body())["error"]
    with stream(base, "Secret", user="alice") as refused:
        assert refused.status == 403
        assert "Secret" in json.loads(refused.read_body())["error"]
    with stream(base, "Secret", user="admin") as admin:
        assert admin.status == 200
    with stream(base, "Nope", user="alice") as missing:
        assert missing.status == 404
        assert json.loads(missing.read_body())["error"] == "no hub labelled 'Nope'"


@both_backends
def test_public_hub_streams_broadcasts_to_anonymous_clients(stream_base, publish):
    base = stream_base
    with stream(base, "News") as anonymous, stream(base, "News", user="alice") as alice:
        assert anonymous.status == alice.status == 200
        publish(NEWS, ev("private to alice", ["alice"]))
        publish(NEWS, ev("public news"))
        assert titles(anonymous.events(1)) == ["public news"]
        assert titles(alice.events(2)) == ["private to alice", "public news"]


@both_backends
def test_flask_sse_notifier_on_an_app_route(stream_base, publish):
    base = stream_base
    with stream(base, user="bob", path="/custom/Inbox") as client:
        assert client.status == 200
        publish(INBOX, ev("custom route", ["bob"]))
        assert titles(client.events(1)) == ["custom route"]


@both_backends
def test_replay_after_a_dropped_connection_without_gap_or_duplicate(stream_base, publish):
    base = stream_base
    client = stream(base, user="alice")
    publish(INBOX, ev("one", ["alice"]))
    (first,) = client.events(1)
    client.close()  # the connection drops
    publish(INBOX, ev("two", ["alice"]))
    publish(INBOX, ev("not mine", ["bob"]))
    publish(INBOX, ev("three"))
    with stream(base, user="alice", headers={"Last-Event-ID": first["id"]}) as again:
        replayed = again.events(2)
        publish(INBOX, ev("four", ["alice"]))
        live = again.events(1)
        with pytest.raises(TimeoutError):
            again.next_event(timeout=0.3)
    assert titles(replayed + live) == ["two", "three", "four"]
    ids = [publish.key(e["id"]) for e in [first, *replayed, *live]]
    assert ids == sorted(ids) and len(set(ids)) == 4


@both_backends
def test_an_event_published_twice_reaches_each_stream_once(stream_base, publish):
    """A publish retried after a failover (its first copy went out live)
    carries the same event under a new id: streams show it once."""
    with stream(stream_base, user="alice") as client:
        again = ev("once", ["alice"])
        publish(INBOX, again)
        publish(INBOX, again)
        publish(INBOX, ev("next", ["alice"]))
        assert titles(client.events(2)) == ["once", "next"]


@both_backends
def test_replay_with_query_argument(stream_base, publish):
    base = stream_base
    first_id = publish(INBOX, ev("old", ["alice"]))
    publish(INBOX, ev("missed", ["alice"]))
    with stream(
        base, path=f"/notifications/stream/Inbox?user=alice&lastEventId={first_id}"
    ) as client:
        assert titles(client.events(1)) == ["missed"]


@both_backends
def test_first_connection_gets_an_id_so_a_reconnect_replays(stream_base, publish):
    base = stream_base
    with stream(base, user="alice") as earlier:
        before = publish(INBOX, ev("before connecting", ["alice"]))
        assert titles(earlier.events(1)) == ["before connecting"]  # routed: the process saw it
        client = stream(base, user="alice")
    with pytest.raises(TimeoutError):
        client.next_event(timeout=0.3)  # history before the connection is not replayed
    cursor = client.last_event_id
    assert cursor == before and client.ready["id"] == cursor  # the "ready" event carries it
    client.close()
    publish(INBOX, ev("while away", ["alice"]))
    with stream(base, user="alice", headers={"Last-Event-ID": cursor}) as again:
        assert titles(again.events(1)) == ["while away"]


def test_an_id_older_than_the_history_sends_reset(stream_server, redis_client):
    base = stream_server(HISTORY_MAXLEN="3")
    publisher = RedisPubSub(redis_client, history_maxlen=3)  # the publisher (a worker) trims

    def publish(hub_id, event):
        return publisher.publish(hub_id, event.to_json())

    old = publish(INBOX, ev("old", ["alice"]))
    ids = [publish(INBOX, ev(f"n{i}", ["alice"])) for i in range(5)]
    with stream(base, user="alice", headers={"Last-Event-ID": old}) as client:
        reset = client.next_event()
        assert reset["event"] == "reset" and reset["id"] == ids[-1]
        publish(INBOX, ev("live", ["alice"]))
        assert titles(client.events(1)) == ["live"]


@pytest.mark.parametrize("bad", ["garbage", "1-2-3", "99999999999999999-0", " "])
@both_backends
def test_a_malformed_or_unknown_last_event_id_sends_reset(stream_base, publish, bad):
    base = stream_base
    publish(INBOX, ev("x", ["alice"]))
    with stream(base, user="alice", headers={"Last-Event-ID": bad}) as client:
        assert client.status == 200
        assert client.next_event()["event"] == "reset"


def test_heartbeat_comments_arrive(stream_server):
    base = stream_server(HEARTBEAT="0.3")
    with stream(base, user="alice") as client:
        with pytest.raises(TimeoutError):
            client.next_event(timeout=1.2)
        assert client.comments.count("") >= 2  # ":\n\n" heartbeats, besides ":ok"


def test_one_subscription_per_process_whatever_the_number_of_streams(stream_base, redis_client):
    base = stream_base
    clients = [stream(base, user=f"u{i}") for i in range(40)]
    try:
        assert all(c.status == 200 for c in clients)
        pubsub_clients = [
            c for c in redis_client.client_list() if int(c.get("sub", 0)) or int(c.get("psub", 0))
        ]
        assert len(pubsub_clients) == 1
        assert redis_client.pubsub_numsub(RedisPubSub.default_prefix + INBOX)[0][1] == 1
    finally:
        for c in clients:
            c.close()


def test_closed_streams_are_unregistered(stream_server):
    import urllib.request

    base = stream_server(HEARTBEAT="0.2")
    clients = [stream(base, user=f"u{i}") for i in range(5)]
    for c in clients:
        c.close()

    def open_count():
        with urllib.request.urlopen(base + "/streams") as response:
            return json.load(response)["open"]

    deadline = time.monotonic() + 5
    while open_count() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_count() == 0


def test_two_server_processes_behind_one_redis_both_deliver(stream_server, publish):
    first, second = stream_server(), stream_server()
    with stream(first, user="alice") as a, stream(second, user="alice") as b:
        publish(INBOX, ev("everywhere", ["alice"]))
        assert titles(a.events(1)) == titles(b.events(1)) == ["everywhere"]


def test_the_js_client_and_template_helper_are_served(stream_base):
    import urllib.request

    base = stream_base
    with urllib.request.urlopen(base + "/notifications/static/flask_notifications.js") as response:
        assert "FlaskNotifications" in response.read().decode()
    with urllib.request.urlopen(base + "/page") as response:
        assert (
            '<script src="/notifications/static/flask_notifications.js" defer></script>'
            in response.read().decode()
        )


def test_a_stalled_client_is_cut_while_a_healthy_one_keeps_receiving(stream_server, publish):
    import urllib.request

    base = stream_server(STREAM_QUEUE="20")
    import threading

    stalled = stream(base, user="alice", rcvbuf=4096)  # connects, then never reads
    healthy = stream(base, user="alice")
    padding = "x" * 30_000
    count = 300  # ~9 MB: more than the socket buffers can hide
    received = []
    reader = threading.Thread(target=lambda: received.extend(healthy.events(count, timeout=15)))
    reader.start()
    for i in range(count):
        publish(INBOX, ev(f"n{i}", ["alice"], padding=padding))
    reader.join(30)
    assert titles(received) == [f"n{i}" for i in range(count)]

    stalled.sock.settimeout(10)
    late = []
    while (event := stalled.next_event(timeout=10)) is not None:
        late.append(event)
    assert len(late) < count  # the server ended this stream instead of queueing for it
    assert titles(late) == [f"n{i}" for i in range(len(late))]  # what it got is in order
    with urllib.request.urlopen(base + "/streams") as response:
        assert json.load(response)["open"] == 1  # only the healthy stream is left
    healthy.close()
    stalled.close()


def test_streams_survive_a_redis_restart_and_miss_nothing(stream_server, tmp_path):
    import urllib.request

    import redis as redis_lib

    from flask_notifications.testing import RedisServer

    with RedisServer(directory=tmp_path, appendonly=True) as server:
        client = redis_lib.Redis.from_url(server.url)
        publisher = RedisPubSub(client)
        base = stream_server(REDIS_URL=server.url)
        with stream(base, user="alice") as alice:
            publisher.publish(INBOX, ev("before", ["alice"]).to_json())
            assert titles(alice.events(1)) == ["before"]

            server.stop(keep_directory=True)
            time.sleep(0.5)  # the dispatcher notices and retries with backoff
            # A first connection needs no Redis: it opens, and the dispatcher's
            # backfill brings it what is published once Redis is back.
            with stream(base, user="bob") as bob:
                assert bob.status == 200
                with stream(base, "News", user="bob", headers={"Last-Event-ID": "1-0"}) as refused:
                    assert refused.status == 503  # a replay needs the history
                with urllib.request.urlopen(base + "/streams") as response:
                    assert json.load(response)["open"] == 2  # the refused one left nothing
                server.start()
                for i in range(3):  # published before the dispatcher has resubscribed
                    publisher.publish(INBOX, ev(f"after{i}", ["alice", "bob"]).to_json())
                got = alice.events(3, timeout=15)
                assert titles(got) == ["after0", "after1", "after2"]
                assert titles(bob.events(3, timeout=15)) == ["after0", "after1", "after2"]
                publisher.publish(INBOX, ev("live again", ["alice"]).to_json())
                assert titles(alice.events(1, timeout=10)) == ["live again"]
                with pytest.raises(TimeoutError):
                    alice.next_event(timeout=0.5)  # and nothing twice
        client.close()


def test_send_through_a_worker_reaches_the_stream(stream_base, make_app, worker):
    from flask_notifications import Notifications
    from flask_notifications.consumers import PushConsumer

    app = make_app()
    notifications = Notifications(app)
    hub = notifications.create_hub("Inbox")
    hub.register_consumer(PushConsumer(app.extensions["notifications"].redis, hub.hub_id))
    with stream(stream_base, user="alice") as alice:
        with app.app_context(), worker(app):
            sent = notifications.send(ev("via celery", ["alice"]))
            received = alice.next_event(timeout=10)
    assert Event.from_json(received["data"]) == sent


def test_runs_under_gunicorn_gevent_workers(redis_url, publish):
    import os
    import subprocess
    import sys

    from flask_notifications.testing import (
        free_port,
        no_control_socket,
        stop_process,
        wait_for_http,
    )

    from .conftest import ROOT

    port = free_port()
    env = dict(os.environ, REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "2", *no_control_socket(),
         "--worker-connections", "1000", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "2",
         "--log-level", "warning", "stream_app:app"],
        cwd=ROOT / "tests", env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/health", proc)
        clients = [stream(base, user=f"u{i}") for i in range(20)]
        try:
            assert all(c.status == 200 for c in clients)
            publish(INBOX, ev("to every worker's streams"))
            assert all(titles(c.events(1)) == ["to every worker's streams"] for c in clients)
        finally:
            for c in clients:
                c.close()
    finally:
        stop_process(proc, 15)


def test_replay_is_not_capped_by_the_readers_history_setting(stream_server, publish):
    base = stream_server(HISTORY_MAXLEN="2")  # the publisher keeps 10,000
    first = publish(INBOX, ev("seen", ["alice"]))
    for i in range(5):
        publish(INBOX, ev(f"missed{i}", ["alice"]))
    with stream(base, user="alice", headers={"Last-Event-ID": first}) as client:
        assert titles(client.events(5)) == [f"missed{i}" for i in range(5)]


def test_any_backend_failure_opening_a_stream_is_a_503(make_app):
    from flask import Flask, request

    from flask_notifications import Notifications
    from flask_notifications.pubsub.redis_pubsub import RedisPubSub as Base

    class Broken(Base):
        def last_id(self, channel):
            raise OSError("broker unreachable")

    app = make_app(NOTIFICATIONS_BACKEND=f"{__name__}.Broken")
    globals()["Broken"] = Broken
    notifications = Notifications(app)
    notifications.create_hub("Inbox")
    notifications.identity_loader(lambda: request.headers.get("X-User"))
    response = app.test_client().get("/notifications/stream/Inbox", headers={"X-User": "a"})
    assert response.status_code == 503
    assert "unavailable" in response.get_json()["error"]
    with app.app_context():
        assert notifications.dispatcher.stream_count == 0
        notifications.shutdown()
    assert isinstance(app, Flask)


def test_script_helper_needs_the_blueprint(make_app):
    from flask import render_template_string

    from flask_notifications import Notifications

    app = make_app(NOTIFICATIONS_REGISTER_BLUEPRINT=False)
    Notifications(app)
    with app.test_request_context(), pytest.raises(RuntimeError, match="blueprint"):
        render_template_string("{{ notifications_script() }}")


def test_default_identity_is_flask_login_current_user(make_app):
    from flask import Flask
    from flask_login import LoginManager, UserMixin, login_user

    from flask_notifications import Notifications

    class User(UserMixin):
        def __init__(self, user_id):
            self.id = user_id

    app = make_app(SECRET_KEY="test")
    login = LoginManager(app)
    login.user_loader(User)
    notifications = Notifications(app)  # no identity_loader: Flask-Login's user is used
    notifications.create_hub("Inbox")

    @app.post("/login/<user_id>")
    def log_in(user_id):
        login_user(User(user_id))
        return "ok"

    client = app.test_client()
    assert client.get("/notifications/stream/Inbox").status_code == 401
    client.post("/login/42")
    response = client.get("/notifications/stream/Inbox", buffered=False)
    assert response.status_code == 200
    with app.test_request_context():
        login_user(User(7))
        assert notifications.current_identity() == "7"
    response.close()
    with app.app_context():
        notifications.shutdown()
    assert isinstance(app, Flask)


def test_without_flask_login_manager_the_default_identity_is_anonymous(make_app):
    from flask_notifications import Notifications

    app = make_app()
    notifications = Notifications(app)
    with app.test_request_context():
        assert notifications.current_identity() is None


def test_unread_counts_reach_only_the_users_streams(stream_base, make_app, tmp_path):
    from flask_notifications import Notifications
    from flask_notifications.consumers import StoreConsumer

    app = make_app(
        NOTIFICATIONS_DATABASE_URI=f"sqlite:///{tmp_path / 'inbox.sqlite'}",
        CELERY_TASK_ALWAYS_EAGER=True,
    )
    notifications = Notifications(app)
    notifications.create_hub("Inbox").register_consumer(StoreConsumer())
    with stream(stream_base, user="alice") as alice, stream(stream_base, user="bob") as bob:
        with app.app_context():
            notifications.send(ev("stored for alice", ["alice", "carol"]))
            count = alice.next_event()
            assert count["event"] == "unread_count" and count["id"] is None
            assert json.loads(count["data"])["unread"] == 1
            item = notifications.inbox.list("alice").items[0]
            notifications.inbox.mark_read("alice", item["id"])
            assert json.loads(alice.next_event()["data"])["unread"] == 0
            notifications.shutdown()
        with pytest.raises(TimeoutError):
            bob.next_event(timeout=0.3)  # bob's stream got nothing


def test_replay_skips_what_is_not_an_event(stream_base, redis_client):
    # A custom backend may keep unread-count messages in its history: never replay them.
    backend = RedisPubSub(redis_client)
    first = backend.publish(INBOX, ev("seen", ["alice"]).to_json())
    backend.publish(INBOX, json.dumps({"unread_counts": {"alice": 1, "bob": 2}}))
    backend.publish(INBOX, ev("missed", ["alice"]).to_json())
    with stream(stream_base, user="alice", headers={"Last-Event-ID": first}) as client:
        assert titles(client.events(1)) == ["missed"]
        with pytest.raises(TimeoutError):
            client.next_event(timeout=0.3)
