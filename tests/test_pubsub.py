"""Backend interface and the default RedisPubSub, on a real Redis."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from flask_notifications.pubsub import Backend, RedisPubSub
from flask_notifications.pubsub.backend import Backend as DocumentedBackend
from flask_notifications.pubsub.redis_pubsub import RedisPubSub as DocumentedRedisPubSub


class Listener:
    """Runs ``backend.listen()`` in a thread and collects what it yields."""

    def __init__(self, backend, *channels):
        self.backend = backend
        self.channels = channels
        self.messages: queue.Queue = queue.Queue()

    def __enter__(self):
        self.backend.subscribe(*self.channels)
        client = self.backend.redis
        names = [self.backend.channel_name(c) for c in self.channels]
        deadline = time.monotonic() + 5
        # SUBSCRIBE travels on its own connection: wait until Redis counts it.
        while not all(n >= 1 for _, n in client.pubsub_numsub(*names)):
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
        publisher.publish("hub-a", '{"n": 1}')
        publisher.publish("hub-c", '{"n": 2}')
        publisher.publish("hub-b", '{"n": "é"}')
        assert listener.get() == {"type": "message", "channel": "hub-a", "data": '{"n": 1}'}
        assert listener.get() == {"type": "message", "channel": "hub-b", "data": '{"n": "é"}'}
        assert listener.empty(0.2)


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
    assert message["data"] == b"payload"
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
