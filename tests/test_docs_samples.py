"""The documentation's samples (``examples/docs/*.py``, included verbatim in the
docs with ``literalinclude``) run as printed: imported as modules, their
routes driven with Flask's test client, their consumers run by a real
in-thread Celery worker on the test Redis."""

from __future__ import annotations

import importlib.util
import json
import queue
import runpy
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from flask_notifications.signals import event_consumed, event_filtered, event_sent

from .conftest import ROOT, wait_for

SAMPLES = ROOT / "examples" / "docs"


@pytest.fixture
def load_sample(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., ModuleType]]:
    """``load_sample("quickstart")`` imports ``examples/docs/quickstart.py`` as a
    fresh module, with ``REDIS_URL`` naming the test Redis, and checks that
    importing it sends nothing (a worker imports it too: it would send again
    at every start). The current directory (where samples write their log
    files) and the app's instance folder (the inbox's SQLite file) are in
    ``tmp_path``."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.chdir(tmp_path)
    loaded: list[ModuleType] = []

    def load(name: str, module_name: str | None = None) -> ModuleType:
        module_name = module_name or f"docs_sample_{name}"
        spec = importlib.util.spec_from_file_location(module_name, SAMPLES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, module_name, module)
        sent: list[Any] = []
        with event_sent.connected_to(lambda app, **kw: sent.append(kw["event"])):
            spec.loader.exec_module(module)
        assert not sent, f"{name}.py sends events when it is imported"
        module.app.config["TESTING"] = True
        module.app.instance_path = str(tmp_path / "instance")  # before the inbox's first use
        loaded.append(module)
        return module

    yield load
    for module in loaded:
        with module.app.app_context():
            module.notifications.shutdown()  # ends the streams a test left open


@pytest.fixture
def consumed() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """``(consumer task name, event)`` for each event a worker consumed."""
    seen: list[tuple[str, dict[str, Any]]] = []

    def record(app: Any, event: Any, hub: Any, consumer: Any) -> None:
        seen.append((consumer.task_name(), dict(event)))

    with event_consumed.connected_to(record):
        yield seen


class Stream:
    """An SSE response of Flask's test client, read in a thread, frame by frame."""

    def __init__(self, client: Any, path: str) -> None:
        self.response = client.get(path, buffered=False)
        self.frames: queue.Queue[dict[str, str]] = queue.Queue()
        if self.response.status_code == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        try:
            for chunk in self.response.response:
                buffer += chunk
                while b"\n\n" in buffer:
                    raw, buffer = buffer.split(b"\n\n", 1)
                    fields = {}
                    for line in raw.decode().splitlines():
                        if line and not line.startswith(":"):
                            name, _, value = line.partition(":")
                            fields[name] = value.removeprefix(" ")
                    if "event" in fields:
                        self.frames.put(fields)
        except ValueError:  # the response was closed under the reader
            pass

    def next(self, timeout: float = 15.0) -> dict[str, str]:
        """The next frame with an ``event:`` field (heartbeats are comments)."""
        return self.frames.get(timeout=timeout)

    def next_event(self, timeout: float = 15.0) -> tuple[str, dict[str, Any]]:
        """The next event other than ``ready``, as ``(type, data)``."""
        while True:
            frame = self.next(timeout)
            if frame["event"] != "ready":
                return frame["event"], json.loads(frame["data"])

    def assert_nothing(self, timeout: float = 0.5) -> None:
        """No frame comes within ``timeout`` (after another stream got its event)."""
        with pytest.raises(queue.Empty):
            self.frames.get(timeout=timeout)


def logged_in(app: Any, user: str) -> Any:
    """A test client logged in as ``user`` through the sample's ``/login/<name>``."""
    client = app.test_client()
    response = client.get(f"/login/{user}")
    assert response.status_code == 200 and response.get_json() == {"user": user}
    return client


# -- docs/index.rst -------------------------------------------------------------------------


def test_index_sample_sends_from_a_view_and_the_worker_prints(
    load_sample, worker, consumed, capsys
):
    sample = load_sample("index")
    assert sample.celery is sample.app.extensions["notifications"].celery
    with worker(sample.app):
        response = sample.app.test_client().post("/comments")
        assert response.status_code == 200
        event_id = response.get_json()["event_id"]
        wait_for(lambda: consumed)
    assert [(name, event["event_id"]) for name, event in consumed] == [
        ("app.print_comment", event_id)
    ]
    assert "New comment" in capsys.readouterr().out


# -- docs/installation.rst (quick start) ------------------------------------------------------


def test_quickstart_streams_to_the_logged_in_recipient_and_logs(
    load_sample, worker, consumed, tmp_path
):
    sample = load_sample("quickstart")
    anonymous = sample.app.test_client()
    assert anonymous.get("/notifications/stream/Messages").status_code == 401
    bob = Stream(logged_in(sample.app, "bob"), "/notifications/stream/Messages")
    alice = Stream(logged_in(sample.app, "alice"), "/notifications/stream/Messages")
    assert bob.response.status_code == 200 and alice.response.status_code == 200
    assert bob.next()["event"] == "ready" and alice.next()["event"] == "ready"

    with worker(sample.app):
        response = anonymous.post("/hello/bob")
        assert response.status_code == 200
        event_id = response.get_json()["event_id"]
        event_type, data = bob.next_event()
        wait_for(lambda: len(consumed) == 2)  # pushed and logged
    assert (event_type, data["event_id"], data["title"]) == ("message", event_id, "Hi")
    assert data["recipients"] == ["bob"]
    alice.assert_nothing()
    (line,) = (tmp_path / "messages.log").read_text().splitlines()
    assert json.loads(line)["event_id"] == event_id


# -- docs/streaming.rst -----------------------------------------------------------------------


def test_streaming_sample_private_public_and_admin_hubs(load_sample, worker):
    sample = load_sample("streaming")
    anonymous = sample.app.test_client()
    assert anonymous.get("/notifications/stream/Inbox").status_code == 401
    assert logged_in(sample.app, "bob").get("/notifications/stream/Admin").status_code == 403
    root = Stream(logged_in(sample.app, "root"), "/notifications/stream/Admin")
    assert root.response.status_code == 200
    news = Stream(anonymous, "/notifications/stream/News")
    bob_client = logged_in(sample.app, "bob")
    inbox = Stream(bob_client, "/notifications/stream/Inbox")
    for stream in (root, news, inbox):
        assert stream.next()["event"] == "ready"

    with worker(sample.app):
        alice = logged_in(sample.app, "alice")
        message_id = alice.post("/message/bob").get_json()["event_id"]
        event_type, data = inbox.next_event()
        assert (event_type, data["event_id"]) == ("message", message_id)
        assert data["sender"] == "alice" and data["recipients"] == ["bob"]

        news_id = anonymous.post("/news").get_json()["event_id"]
        event_type, data = news.next_event()
        assert (event_type, data["event_id"], data["recipients"]) == ("news", news_id, [])
    inbox.assert_nothing()  # the news went to the News hub only
    root.assert_nothing(0)


# -- docs/inbox.rst ---------------------------------------------------------------------------


def test_inbox_sample_stores_for_each_recipient(load_sample, worker, consumed, tmp_path):
    sample = load_sample("inbox")
    alice = logged_in(sample.app, "alice")
    assert alice.get("/notifications/unread-count").get_json() == {"unread": 0}
    stream = Stream(alice, "/notifications/stream/Inbox")
    assert stream.next()["event"] == "ready"

    with worker(sample.app):
        bob = logged_in(sample.app, "bob")
        event_id = bob.post("/comment").get_json()["event_id"]
        wait_for(lambda: len(consumed) == 2)  # pushed and stored
        events = dict(stream.next_event() for _ in range(2))  # the comment, the new count
    assert events["comment"]["event_id"] == event_id
    assert events["unread_count"]["unread"] == 1
    assert alice.get("/notifications/unread-count").get_json() == {"unread": 1}
    carol = logged_in(sample.app, "carol")
    assert carol.get("/notifications/unread-count").get_json() == {"unread": 1}
    assert bob.get("/notifications/unread-count").get_json() == {"unread": 0}
    (item,) = alice.get("/notifications/inbox").get_json()["items"]
    assert item["data"]["post_id"] == 12 and item["data"]["sender"] == "bob"
    assert (tmp_path / "instance" / "notifications.sqlite").is_file()


# -- docs/usage.rst ---------------------------------------------------------------------------


def test_usage_sample_and_its_send_script(load_sample, worker, consumed, tmp_path):
    sample = load_sample("usage", module_name="app")  # send.py does `from app import ...`
    filtered: list[str] = []

    def record_filtered(app: Any, event: Any, hub: Any) -> None:
        filtered.append(event["title"])

    with event_filtered.connected_to(record_filtered), worker(sample.app):
        runpy.run_path(str(SAMPLES / "usage_send.py"))
        wait_for(lambda: len(consumed) == 2)  # app.write_to_file and the PushConsumer
    assert filtered == ["This event will not pass the filter"]  # nothing enqueued for it
    assert {event["title"] for _, event in consumed} == {"This event will pass the filter"}
    (line,) = (tmp_path / "events.log").read_text().splitlines()
    assert json.loads(line)["title"] == "This event will pass the filter"
