"""Consumer hooks, PushConsumer and LogConsumer (against a real Redis and real processes)."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from flask_notifications import Event, InvalidEventError, Notifications
from flask_notifications.consumers import Consumer, FunctionConsumer, LogConsumer, PushConsumer
from flask_notifications.consumers.push_consumer import PushConsumer as DocumentedPushConsumer
from flask_notifications.event_hub import EventHub
from flask_notifications.pubsub.redis_pubsub import RedisPubSub

from .test_pubsub import Listener


def make_event(**kw):
    fields = dict(event_id=None, event_type="test", title="Title", body="Body")
    fields.update(kw)
    return Event(**fields)


class Recording(Consumer):
    def __init__(self):
        self.calls = []

    def before_consume(self, event, *args, **kwargs):
        self.calls.append(("before", event["event_id"], args, kwargs))

    def consume(self, event, *args, **kwargs):
        self.calls.append(("consume", event["event_id"], args, kwargs))
        return {"consumed": event["title"]}

    def after_consume(self, event, *args, **kwargs):
        self.calls.append(("after", event["event_id"], args, kwargs))


def test_call_runs_hooks_in_order_and_returns_consume_result():
    consumer = Recording()
    event = make_event()
    assert consumer(event, 1, flag=True) == {"consumed": "Title"}
    assert [c[0] for c in consumer.calls] == ["before", "consume", "after"]
    assert all(c[1:] == (event["event_id"], (1,), {"flag": True}) for c in consumer.calls)


def test_call_accepts_event_json():
    consumer = Recording()
    event = make_event()
    assert consumer(event.to_json()) == {"consumed": "Title"}
    with pytest.raises(InvalidEventError):
        consumer("{not json")
    assert consumer.calls[-1][0] == "after"  # the bad call ran no hook


def test_before_consume_can_veto():
    class Veto(Recording):
        def before_consume(self, event, *args, **kwargs):
            raise PermissionError("no")

    consumer = Veto()
    with pytest.raises(PermissionError):
        consumer(make_event())
    assert consumer.calls == []


def test_base_consume_is_abstract():
    with pytest.raises(NotImplementedError):
        Consumer()(make_event())


def test_function_consumer():
    seen = []
    consumer = FunctionConsumer(lambda event, *a, **k: seen.append((event, a, k)) or "ok")
    event = make_event()
    assert consumer(event, 2, x=1) == "ok"
    assert seen == [(event, (2,), {"x": 1})]
    with pytest.raises(TypeError):
        FunctionConsumer("not callable")  # type: ignore[arg-type]


def test_push_consumer_publishes_event_json_on_the_hub_channel(redis_client):
    assert DocumentedPushConsumer is PushConsumer
    hub = EventHub("PushHub")
    other = EventHub("OtherHub")
    with Listener(RedisPubSub(redis_client), hub.hub_id) as listener:
        event = make_event(recipients=["u1"], extra="kept")
        PushConsumer(redis_client, hub.hub_id)(event)
        PushConsumer(redis_client, other.hub_id)(make_event())
        message = listener.get()
        assert message["type"] == "message"
        assert message["channel"] == hub.hub_id
        assert Event.from_json(message["data"]) == event
        assert listener.empty(0.2)


def test_push_consumer_accepts_a_backend_or_a_hub(redis_client):
    backend = RedisPubSub(redis_client)
    hub = EventHub("H")
    consumer = PushConsumer(backend, hub)
    assert consumer.backend is backend and consumer.hub_id == hub.hub_id
    assert consumer.backend_for_current_app() is backend
    plain = PushConsumer(redis_client, "x")
    assert plain.backend is None and plain.client is redis_client
    assert isinstance(plain.backend_for_current_app(), RedisPubSub)
    assert plain.backend_for_current_app() is plain.backend_for_current_app()
    with pytest.raises(TypeError):
        PushConsumer(redis_client, "")


class PrefixedBackend(RedisPubSub):
    default_prefix = "custom-prefix:"


def test_push_consumer_with_a_client_uses_the_configured_backend(make_app, redis_client):
    app = make_app(NOTIFICATIONS_BACKEND=f"{__name__}.PrefixedBackend")
    notifications = Notifications(app)
    hub = notifications.create_hub("Configured")
    consumer = PushConsumer(redis_client, hub.hub_id)
    with app.app_context():
        assert type(consumer.backend_for_current_app()) is PrefixedBackend
        assert consumer.backend_for_current_app() is consumer.backend_for_current_app()
        with Listener(notifications.create_backend(), hub.hub_id) as listener:
            consumer(make_event(title="via the configured backend"))
            assert Event.from_json(listener.get()["data"])["title"] == "via the configured backend"


def test_log_consumer_appends_one_json_line_per_event(tmp_path):
    path = tmp_path / "sub" / "events.log"
    path.parent.mkdir()
    consumer = LogConsumer(path)
    events = [make_event(title=f"t{i}", text="multi\nline ✓") for i in range(3)]
    for event in events:
        consumer(event)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [Event.from_json(line) for line in lines] == events


def _write_many(path: str, writer: int, count: int, size: int) -> None:
    consumer = LogConsumer(path)
    for i in range(count):
        consumer(Event(f"{writer}-{i}", "test", "t", "x" * size))


def test_log_consumer_lines_stay_whole_across_processes(tmp_path):
    path = tmp_path / "shared.log"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(str(path), w, 200, 20_000)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    ids = [json.loads(line)["event_id"] for line in path.read_text().splitlines()]
    assert len(ids) == 800
    assert set(ids) == {f"{w}-{i}" for w in range(4) for i in range(200)}
