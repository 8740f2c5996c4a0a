"""What 0.1 code relies on: its module paths, calls outside an app context,
consumers given the event's JSON, EventHub(label, celery), sse_notifier_for,
and the e-mail consumers on an app without the extension."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading

import pytest
from flask import Flask

from flask_notifications import ConfigurationError, Event, Notifications
from flask_notifications.consumers import (
    EmailConsumer,
    FlaskEmailConsumer,
    FlaskMailConsumer,
    FunctionConsumer,
    LogConsumer,
    PushConsumer,
)
from flask_notifications.consumers.consumer import Consumer
from flask_notifications.event_filter import Not
from flask_notifications.event_hub import EventHub
from flask_notifications.pubsub.backend import Backend
from flask_notifications.pubsub.redis_pubsub import RedisPubSub
from flask_notifications.stream.notifier import SseNotifier

from .conftest import ROOT, wait_for

# 0.1 module (under flask_notifications.) -> the name it defines and today's object
ALIASES = {
    "consumers.email.flaskmail_consumer": ("FlaskMailConsumer", FlaskMailConsumer),
    "consumers.email.flaskemail_consumer": ("FlaskEmailConsumer", FlaskEmailConsumer),
    "consumers.email.email_consumer": ("EmailConsumer", EmailConsumer),
    "consumers.push.push_consumer": ("PushConsumer", PushConsumer),
    "consumers.push.ssenotifier": ("SseNotifier", SseNotifier),
    "consumers.log.log_consumer": ("LogConsumer", LogConsumer),
    "filters.not_filter": ("Not", Not),
    "backend.backend": ("Backend", Backend),
    "backend.redis_backend": ("RedisBackend", RedisPubSub),
}
BACKEND_0_1 = "flask_notifications.backend.redis_backend.RedisBackend"


def event(**fields):
    defaults = dict(event_id=None, event_type="user", title="Title", body="Body")
    defaults.update(fields)
    return Event(**defaults)


def first(iterable, timeout=5.0):
    """The first item of ``iterable``, read in a thread (fail, never hang)."""
    items: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: items.put(next(iter(iterable))), daemon=True).start()
    return items.get(timeout=timeout)


def subscribed(client, backend, hub_id):
    channel = backend.channel_name(hub_id)
    wait_for(lambda: client.pubsub_numsub(channel)[0][1] >= 1, 5)


# -- 0.1 module paths -------------------------------------------------------------------------


def test_the_0_1_module_paths_are_aliases_of_todays_classes():
    import importlib

    for module, (name, obj) in ALIASES.items():
        imported = importlib.import_module(f"flask_notifications.{module}")
        assert getattr(imported, name) is obj, f"{module}.{name}"


def test_importing_the_0_1_paths_registers_no_task():
    script = f"""
import importlib, json
import celery._state
import flask_notifications
from flask_notifications.delivery import registry
before = len(celery._state._on_app_finalizers)
for name in {sorted(ALIASES)!r}:
    importlib.import_module("flask_notifications." + name)
print(json.dumps([len(celery._state._on_app_finalizers) - before, sorted(registry._registered)]))
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [0, []]


def test_the_0_1_backend_setting(make_app):
    app = make_app(BACKEND=BACKEND_0_1)
    notifications = Notifications(app)
    assert app.config["NOTIFICATIONS_BACKEND"] == BACKEND_0_1
    assert type(notifications.create_backend()) is RedisPubSub


# -- outside an app context -------------------------------------------------------------------


def test_a_bound_extension_sends_outside_a_context(app, notifications, worker, tmp_path):
    path = tmp_path / "out.log"
    notifications.create_hub("Outside").register_consumer(LogConsumer(path))
    sent = notifications.send(event(title="from a script"))
    with worker(app):
        wait_for(path.exists, 15)
    assert Event.from_json(path.read_text().strip()) == sent


def test_a_bound_extension_gives_its_app_objects_outside_a_context(app, notifications, celery_app):
    with app.app_context():
        celery, redis_client = notifications.celery, notifications.redis
    assert notifications.celery is celery and notifications.redis is redis_client
    backend = notifications.create_backend()
    assert isinstance(backend, RedisPubSub) and backend.redis is redis_client
    assert notifications.create_hub("Outside") is notifications.get_hub("Outside")


def test_sse_notifier_for_outside_a_context(notifications, redis_client):
    hub = notifications.create_hub("Frames")
    with notifications.sse_notifier_for(hub.hub_id) as notifier:
        assert isinstance(notifier, SseNotifier) and isinstance(notifier.backend, RedisPubSub)
        subscribed(redis_client, notifier.backend, hub.hub_id)
        sent = event(title="two\nlines", recipients=["u1"])
        PushConsumer(notifications.create_backend(), hub.hub_id).consume(sent.to_json())
        data = first(notifier).decode()
    lines = data.splitlines()
    assert lines[0].startswith("id: ") and lines[1] == "event: user"
    assert Event.from_json(lines[2].removeprefix("data: ")) == sent
    assert data.endswith("\n\n")


@pytest.mark.parametrize(
    "use",
    [
        lambda n: n.send(event()),
        lambda n: n.create_backend(),
        lambda n: n.celery,
        lambda n: n.redis,
        lambda n: n.sse_notifier_for("hub").close(),
    ],
    ids=["send", "create_backend", "celery", "redis", "sse_notifier_for"],
)
def test_an_unbound_or_ambiguous_extension_outside_a_context_raises(make_app, use):
    notifications = Notifications()
    with pytest.raises(RuntimeError, match="not initialised"):
        use(notifications)
    notifications.create_hub("Needs no app")  # hubs belong to the extension
    first_app = make_app()
    notifications.init_app(first_app)
    notifications.init_app(make_app())
    with pytest.raises(RuntimeError, match="several apps"):
        use(notifications)
    with first_app.app_context():
        use(notifications)


# -- consumers take the event's JSON ----------------------------------------------------------


def test_consume_takes_the_events_json_or_fields(tmp_path, monkeypatch):
    class Titles(Consumer):
        def consume(self, event, *args, **kwargs):
            return event["title"], args

    sent = event(title="T")
    for given in (sent, sent.to_json(), sent.to_json().encode(), dict(sent)):
        assert Titles().consume(given, 1) == ("T", (1,))
        assert Titles()(given) == ("T", ())
    assert FunctionConsumer(lambda e: type(e)).consume(sent.to_json()) is Event

    monkeypatch.chdir(tmp_path)
    LogConsumer().consume(sent.to_json())  # 0.1's default file, in the cwd
    assert (tmp_path / "events.log").read_text() == sent.to_json() + "\n"


def test_log_consumer_keeps_the_write_event_hook(tmp_path):
    class TitleLog(LogConsumer):
        def write_event(self, event_json):
            return Event.from_json(event_json)["title"]

    consumer = TitleLog(tmp_path / "titles.log")
    consumer(event(title="first").to_json())
    consumer.consume(event(title="second"))
    assert (tmp_path / "titles.log").read_text() == "first\nsecond\n"


# -- hubs ---------------------------------------------------------------------------------------


def test_event_hub_takes_celery_second_and_public_by_keyword(celery_app):
    hub = EventHub("Positional", celery_app)
    assert hub.celery is celery_app and hub.public is False
    assert EventHub("Keyword", public=True).public is True
    with pytest.raises(TypeError, match="public="):
        EventHub("Old", True)  # type: ignore[arg-type]


def test_equal_consumers_register_once(redis_client, tmp_path):
    hub = EventHub("Dedup")
    backend = RedisPubSub(redis_client)

    def on_event(event):
        pass

    hub.register_consumer(on_event)
    push = PushConsumer(backend, hub.hub_id)
    log = LogConsumer(tmp_path / "a.log")
    for consumer in (push, log, PushConsumer(backend, hub.hub_id), LogConsumer(tmp_path / "a.log")):
        hub.register_consumer(consumer)
    assert hub.registered_consumers == (on_event, push, log)
    assert PushConsumer(backend, hub.hub_id) == push and hash(
        LogConsumer(tmp_path / "a.log")
    ) == hash(log)
    assert hub.is_registered(LogConsumer(tmp_path / "a.log"))
    hub.register_consumer(LogConsumer(tmp_path / "b.log"))  # another configuration
    hub.register_consumer(PushConsumer(backend, "other hub"))
    assert len(hub.registered_consumers) == 5
    assert hub.deregister_consumer(LogConsumer(tmp_path / "a.log")) is True
    assert log not in hub.registered_consumers and on_event in hub.registered_consumers


# -- e-mail -------------------------------------------------------------------------------------


def test_flask_mail_consumer_from_app_exposes_mail(make_app):
    app = make_app()
    consumer = FlaskMailConsumer.from_app(app, "from@example.org", ["to@example.org"])
    assert consumer.mail is app.extensions["mail"]  # outside a context too
    assert consumer == FlaskMailConsumer.from_app(app, "from@example.org", ["to@example.org"])
    with app.app_context(), consumer.mail.record_messages() as outbox:
        assert consumer(event(title="Recorded").to_json()) == 1
    assert [m.subject for m in outbox] == ["Recorded"]


@pytest.mark.parametrize("cls", [FlaskMailConsumer, FlaskEmailConsumer])
def test_mail_consumers_on_an_app_without_the_extension(cls, smtp_server):
    server = smtp_server()
    app = Flask("bare")
    app.config.update(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=server.port,
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=server.port,
    )
    consumer = cls.from_app(app, "from@example.org", ["to@example.org"])
    sent = event(title="No extension")
    with app.app_context():
        assert consumer(sent.to_json()) == 1
        assert consumer.consume(sent) == 1  # no once-only records: sent again
        with pytest.raises(ConfigurationError, match="email_resolver"):
            cls.from_app(app, "from@example.org")(event(recipients=["alice"]))
        with pytest.raises(ConfigurationError, match="digests"):
            cls.from_app(app, "from@example.org", ["to@example.org"], digest=60)(sent)
    wait_for(lambda: len(server.messages) == 2, 10)
    assert [m["Subject"] for m in server.messages] == ["No extension"] * 2
