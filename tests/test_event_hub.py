"""EventHub: stable ids, filters, and every way to register a consumer."""

from __future__ import annotations

import subprocess
import sys

import pytest
from celery import Celery

from flask_notifications.consumers import Consumer, LogConsumer, PushConsumer
from flask_notifications.event_hub import EventHub, hub_id_for, register_consumer
from flask_notifications.filters import Always, WithEventType


def test_hub_id_is_derived_from_label_and_stable_across_processes():
    hub = EventHub("TestHub")
    assert hub.hub_id != hub.label
    assert hub.hub_id == hub_id_for("TestHub") == EventHub("TestHub").hub_id
    assert hub.hub_id != EventHub("TestHub2").hub_id
    code = "from flask_notifications.event_hub import EventHub; print(EventHub('TestHub').hub_id)"
    for seed in ("0", "12345"):  # hash randomisation must not matter
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        )
        assert out.stdout.strip() == hub.hub_id


def test_unicode_labels():
    assert len(EventHub("Événements ✓").hub_id) == 32


def test_filter_by():
    hub = EventHub("h")
    assert isinstance(hub.filter, Always)
    f = WithEventType("x")
    assert hub.filter_by(f) is hub and hub.filter is f
    with pytest.raises(TypeError):
        hub.filter_by(lambda e: True)


def test_bare_decorator_returns_function_and_registers():
    hub = EventHub("h")

    @hub.register_consumer
    def on_event(event, *args, **kwargs):
        return event["title"]

    assert callable(on_event) and on_event({"title": "x"}) == "x"
    assert hub.is_registered(on_event)
    assert list(hub.consumers) == [
        f"{__name__}.test_bare_decorator_returns_function_and_registers.<locals>.on_event"
    ]


def test_decorator_with_celery_task_name(celery_app):
    hub = EventHub("h")

    @hub.register_consumer(celery_task_name="app.write_to_file")
    def write_to_file(event, *args, **kwargs):
        pass

    assert list(hub.consumers) == ["app.write_to_file"]
    assert hub.is_registered(write_to_file) and hub.is_registered("app.write_to_file")
    assert "app.write_to_file" in celery_app.tasks
    # also on a Celery app created afterwards (a worker's)
    assert "app.write_to_file" in Celery("later", set_as_current=False).tasks


def test_register_instance_and_duplicates_are_noops(redis_client):
    hub = EventHub("h")
    push = PushConsumer(redis_client, hub.hub_id)
    assert hub.register_consumer(push) is push
    assert hub.register_consumer(push) is push
    assert list(hub.consumers.values()) == [push]

    def f(event):
        pass

    hub.register_consumer(f)
    hub.register_consumer(f)
    hub.register_consumer(f, celery_task_name="other.name")
    assert len(hub.consumers) == 2


def test_default_names_of_several_instances_of_one_class(tmp_path):
    hub = EventHub("h")
    first, second = LogConsumer(tmp_path / "a"), LogConsumer(tmp_path / "b")
    hub.register_consumer(first)
    hub.register_consumer(second)
    base = "flask_notifications.consumers.log_consumer.LogConsumer"
    assert hub.consumers == {base: first, f"{base}-2": second}
    assert hub.get_consumer(f"{base}-2") is second


def test_explicit_name_clash_is_an_error(tmp_path):
    hub = EventHub("h")
    hub.register_consumer(LogConsumer(tmp_path / "a"), celery_task_name="app.log")
    with pytest.raises(ValueError, match="app.log"):
        hub.register_consumer(LogConsumer(tmp_path / "b"), celery_task_name="app.log")
    with pytest.raises(ValueError):
        hub.register_consumer(LogConsumer(tmp_path / "c"), celery_task_name="")
    assert len(hub.consumers) == 1


def test_consumer_class_attribute_names_the_task():
    class Named(Consumer):
        celery_task_name = "app.named"

        def consume(self, event, *args, **kwargs):
            return None

    hub = EventHub("h")
    hub.register_consumer(Named())
    assert list(hub.consumers) == ["app.named"]


def test_register_rejects_non_callables():
    with pytest.raises(TypeError):
        EventHub("h").register_consumer(42)


def test_deregister(tmp_path):
    hub = EventHub("h")
    log = LogConsumer(tmp_path / "x")

    def f(event):
        pass

    hub.register_consumer(log)
    hub.register_consumer(f)
    assert hub.deregister_consumer(f) is True
    assert not hub.is_registered(f)
    assert hub.deregister_consumer(f) is False
    assert hub.deregister_consumer(log) is True
    assert hub.consumers == {} and hub._names == ()
    assert hub.deregister_consumer(LogConsumer(tmp_path / "x")) is False


def test_module_level_register_consumer(app, notifications):
    hub = notifications.create_hub("Mod")

    @register_consumer(hub, celery_task_name="tests.mod.consumer")
    def consumer(event):
        pass

    assert hub.is_registered(consumer)
    with app.app_context():

        def by_label(event):
            pass

        register_consumer("Mod", by_label)
    assert hub.is_registered(by_label)
    with pytest.raises(TypeError):
        register_consumer(42, consumer)
