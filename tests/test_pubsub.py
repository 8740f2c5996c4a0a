"""Backend interface and the default RedisPubSub, on a real Redis."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from flask_notifications.pubsub import Backend, RedisPubSub
from flask_notifications.pubsub.backend import Backend as DocumentedBackend
from flask_notifications.pubsub.redis_pubsub import RedisPubSub as DocumentedRedisPubSub
from flask_notifications.pubsub.redis_pubsub import parse_id


class Listener:
    """Runs ``backend.listen()`` in a thread and collects what it yields."""

    def __init__(self, backend, *channels):
        self.backend = backend
        self.channels = channels
        self.messages: queue.Queue = queue.Queue()

    def __enter__(self):
        self.backend.subscribe(*self.channels)
        client = getattr(self.backend, "redis", None)
        names = [self.backend.channel_name(c) for c in self.channels] if client else []
        deadline = time.monotonic() + 5
        # SUBSCRIBE travels on its own connection: wait until Redis counts it.
        while names and not all(n >= 1 for _, n in client.pubsub_numsub(*names)):
            assert time.monotonic() < deadline, "subscription not registered"
            time.sleep(0.01)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        try:
            for message in self.backend.listen():
                self.messages.put(message)
        except Exception:  # the connection is closed on exit
            pass

    def get(self, timeout=5.0):
        return self.messages.get(timeout=timeout)

    def empty(self, wait):
        time.sleep(wait)
        return self.messages.empty()

    def __exit__(self, *exc):
        self.backend.close()
        self.thread.join(5)


def test_documented_paths():
    assert DocumentedBackend is Backend and DocumentedRedisPubSub is RedisPubSub
    assert issubclass(RedisPubSub, Backend)


def test_backend_is_abstract():
    with pytest.raises(TypeError):
        Backend()  # type: ignore[abstract]


def test_publish_subscribe_listen(redis_client):
    with Listener(RedisPubSub(redis_client), "hub-a", "hub-b") as listener:
        publisher = RedisPubSub(redis_client)
        first = publisher.publish("hub-a", '{"n": 1}')
        publisher.publish("hub-c", '{"n": 2}')
        second = publisher.publish("hub-b", '{"n": "é"}')
        assert listener.get() == {
            "type": "message",
            "channel": "hub-a",
            "id": first,
            "data": '{"n": 1}',
        }
        assert listener.get() == {
            "type": "message",
            "channel": "hub-b",
            "id": second,
            "data": '{"n": "é"}',
        }
        assert listener.empty(0.2)
    assert parse_id(first) and parse_id(second)  # ids are per hub: each has its own history


def test_channels_are_namespaced(redis_client):
    backend = RedisPubSub(redis_client)
    assert backend.channel_name("abc") == "flask_notifications:abc"
    raw = redis_client.pubsub(ignore_subscribe_messages=True)
    raw.subscribe("flask_notifications:abc")
    time.sleep(0.05)
    backend.publish("abc", "payload")
    message = None
    deadline = time.monotonic() + 5
    while message is None and time.monotonic() < deadline:
        message = raw.get_message(timeout=0.5)
    raw.close()
    event_id, _, data = message["data"].partition(b" ")
    assert data == b"payload" and parse_id(event_id.decode())
    custom = RedisPubSub(redis_client, prefix="myapp:")
    assert custom.channel_name("abc") == "myapp:abc"


def test_unsubscribe_stops_delivery(redis_client):
    backend = RedisPubSub(redis_client)
    with Listener(backend, "one", "two") as listener:
        backend.unsubscribe("one")
        deadline = time.monotonic() + 5
        while redis_client.pubsub_numsub("flask_notifications:one")[0][1]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        RedisPubSub(redis_client).publish("one", "x")
        RedisPubSub(redis_client).publish("two", "y")
        assert listener.get()["data"] == "y"
        assert listener.empty(0.2)


def test_listen_without_subscription_ends(redis_client):
    assert list(RedisPubSub(redis_client).listen()) == []


def test_create_backend_end_to_end(app, notifications):
    with app.app_context():
        hub = notifications.create_hub("Docs")
        with Listener(notifications.create_backend(), hub.hub_id) as listener:
            notifications.create_backend().publish(hub.hub_id, '{"x": 1}')
            assert listener.get()["data"] == '{"x": 1}'


def test_history_keeps_what_was_published_with_the_same_ids(redis_client):
    backend = RedisPubSub(redis_client)
    with Listener(RedisPubSub(redis_client), "h") as listener:
        ids = [backend.publish("h", f'{{"n": {i}}}') for i in range(5)]
        live = [listener.get()["id"] for _ in range(5)]
    assert live == ids
    assert backend.history("h", ids[1]) == ([(ids[i], f'{{"n": {i}}}') for i in (2, 3, 4)], False)
    assert backend.history("h", ids[-1]) == ([], False)
    assert backend.history("h", ids[0], count=2).entries == [
        (ids[1], '{"n": 1}'),
        (ids[2], '{"n": 2}'),
    ]
    assert backend.history("other", ids[0]).entries == []


def test_history_is_capped_and_asks_for_a_reset_when_events_were_trimmed(redis_client):
    backend = RedisPubSub(redis_client, history_maxlen=3)
    ids = [backend.publish("h", f'{{"n": {i}}}') for i in range(5)]
    assert redis_client.xlen(backend.history_key("h")) == 3
    # The client saw ids[1], the newest trimmed entry: nothing was missed.
    assert backend.history("h", ids[1]) == ([(ids[i], f'{{"n": {i}}}') for i in (2, 3, 4)], False)
    # The client saw only ids[0]: ids[1] is gone.
    assert backend.history("h", ids[0]) == ([], True)


@pytest.mark.parametrize("bad", ["", "abc", "1-", "-1", "1-2-3", "1\n2", "9" * 30 + "-0", "1-0 "])
def test_history_with_a_malformed_id_asks_for_a_reset(redis_client, bad):
    backend = RedisPubSub(redis_client)
    backend.publish("h", "{}")
    assert backend.history("h", bad) == ([], True)


def test_history_lost_or_from_another_redis_asks_for_a_reset(redis_client):
    backend = RedisPubSub(redis_client)
    assert backend.history("never-published", "1-0") == ([], True)
    last = backend.publish("h", "{}")
    ms, seq = parse_id(last)
    assert backend.history("h", f"{ms + 1000}-0") == ([], True)
    assert backend.history("h", f"{ms}-{seq}") == ([], False)


def test_history_maxlen_is_validated_and_configurable(make_app, redis_client):
    for bad in (0, -1, 1.5, True, "10"):
        with pytest.raises(ValueError, match="history_maxlen"):
            RedisPubSub(redis_client, history_maxlen=bad)
    app = make_app(NOTIFICATIONS_HISTORY_MAXLEN=7)
    from flask_notifications import Notifications

    notifications = Notifications(app)
    with app.app_context():
        assert notifications.create_backend().history_maxlen == 7


def test_publish_survives_a_script_cache_flush(redis_client):
    backend = RedisPubSub(redis_client)
    backend.publish("h", "{}")
    redis_client.script_flush()  # as after a Redis restart
    assert parse_id(backend.publish("h", "{}"))


def test_last_id_and_whole_history(redis_client):
    backend = RedisPubSub(redis_client)
    assert backend.last_id("h") is None
    assert backend.history("h", None) == ([], False)
    ids = [backend.publish("h", f'{{"n": {i}}}') for i in range(3)]
    assert backend.last_id("h") == ids[-1]
    assert backend.history("h", None).entries == [(i, f'{{"n": {n}}}') for n, i in enumerate(ids)]


# -- MemoryPubSub: the Backend interface in one process ----------------------------


def test_memory_pubsub_publishes_with_increasing_ids_and_history():
    from flask_notifications.pubsub import MemoryPubSub

    publisher = MemoryPubSub(history_maxlen=3)
    listener = MemoryPubSub(publisher.bus)
    with Listener(listener, "hub-a") as live:
        ids = [publisher.publish("hub-a", f'{{"n": {i}}}') for i in range(5)]
        publisher.publish("hub-b", "{}")
        publisher.publish_transient("hub-a", ['{"unread_counts": {}}'])
        got = [live.get() for _ in range(6)]
    assert [m["id"] for m in got] == [*ids, None]
    assert all(m["channel"] == "hub-a" for m in got)
    keys = [publisher.id_key(i) for i in ids]
    assert keys == sorted(keys) and len(set(keys)) == 5
    assert publisher.last_id("hub-a") == ids[-1] and publisher.last_id("nope") is None
    kept = [(ids[i], f'{{"n": {i}}}') for i in (2, 3, 4)]
    assert publisher.history("hub-a", ids[1]).entries == kept
    assert publisher.history("hub-a", ids[2], count=1).entries == [(ids[3], '{"n": 3}')]
    assert publisher.history("hub-a", ids[0]).reset  # trimmed away
    for bad in ("garbage", "1-0", "007", "99999", ""):
        assert publisher.history("hub-a", bad) == ([], True)
    assert MemoryPubSub().history("hub-a", None) == ([], False)


def test_memory_pubsub_is_selected_with_the_backend_setting(make_app):
    from flask_notifications import Notifications
    from flask_notifications.pubsub import MemoryPubSub

    app = make_app(BACKEND="flask_notifications.pubsub.memory_pubsub.MemoryPubSub")
    notifications = Notifications(app)
    with app.app_context():
        first, second = notifications.create_backend(), notifications.create_backend()
    assert isinstance(first, MemoryPubSub) and first.bus is second.bus
    other = make_app(BACKEND="flask_notifications.pubsub.memory_pubsub.MemoryPubSub")
    Notifications(other)
    assert MemoryPubSub.from_app(other, None).bus is not first.bus  # one bus per app
