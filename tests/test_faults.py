"""Fault tests with real processes: a worker killed mid-consume, Redis restarted
during a burst of sends."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from flask_notifications import Event, NotificationsUnavailable
from flask_notifications.testing import RedisServer

from .conftest import ROOT, wait_for, worker_process

pytestmark = pytest.mark.subprocess


@pytest.fixture
def files(tmp_path, monkeypatch):
    paths = {name: tmp_path / name.lower() for name in ("LOG", "STARTED", "HOLD", "SEVERAL")}
    for name, path in paths.items():
        monkeypatch.setenv(name, str(path))
    return paths


def load_app(redis_url, monkeypatch):
    """Import tests/reliability_app.py afresh, bound to ``redis_url``. Tests
    take the ``celery_app`` fixture: a fresh current Celery app, so the
    broker connection pool is not one built for another test's Redis."""
    import importlib
    import sys

    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    sys.modules.pop("reliability_app", None)
    module = importlib.import_module("reliability_app")
    return module.app, module.notifications


def consumed(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_a_worker_killed_mid_consume_leaves_the_event_to_another_exactly_once(
    redis_url, files, monkeypatch, celery_app
):
    app, notifications = load_app(redis_url, monkeypatch)
    files["HOLD"].touch()  # the consumer will wait inside consume()
    with app.app_context():
        sent = notifications.send(Event(None, "test", "t", "b"))
    with worker_process("reliability_app:celery", redis_url, cwd=ROOT / "tests") as first:
        wait_for(lambda: files["STARTED"].exists(), 30)
        assert files["STARTED"].read_text() == sent["event_id"]
        os.kill(first.pid, signal.SIGKILL)  # mid-consume, nothing acknowledged
        first.wait(10)
    files["HOLD"].unlink()
    assert consumed(files["LOG"]) == []
    time.sleep(2.5)  # the broker's visibility timeout (2 s) passes
    with worker_process("reliability_app:celery", redis_url, cwd=ROOT / "tests"):
        wait_for(lambda: consumed(files["LOG"]), 30)
        time.sleep(3)  # room for a wrong second delivery
    assert consumed(files["LOG"]) == [sent["event_id"]]


def test_a_worker_killed_mid_event_runs_each_consumer_exactly_once_after_redelivery(
    redis_url, files, monkeypatch, celery_app
):
    app, notifications = load_app(redis_url, monkeypatch)
    files["HOLD"].touch()  # the second consumer will wait inside consume()
    with app.app_context():
        sent = notifications.send(Event(None, "several", "t", "b"))
    event_id = sent["event_id"]
    with worker_process("reliability_app:celery", redis_url, cwd=ROOT / "tests") as first:
        wait_for(lambda: files["STARTED"].exists(), 30)
        assert files["STARTED"].read_text() == event_id
        os.kill(first.pid, signal.SIGKILL)  # mid-event: the first consumer ran, not the others
        first.wait(10)
    files["HOLD"].unlink()
    assert files["SEVERAL"].read_text().splitlines() == [f"first {event_id}"]
    time.sleep(2.5)  # the broker's visibility timeout (2 s) passes
    with worker_process("reliability_app:celery", redis_url, cwd=ROOT / "tests"):
        wait_for(lambda: len(files["SEVERAL"].read_text().splitlines()) >= 3, 30)
        time.sleep(3)  # room for a wrong second run
    lines = files["SEVERAL"].read_text().splitlines()
    assert sorted(lines) == [f"{name} {event_id}" for name in ("first", "second", "third")]


def test_every_send_that_returned_is_delivered_across_a_redis_restart(
    files, monkeypatch, tmp_path, celery_app
):
    with RedisServer(directory=tmp_path / "redis", appendonly=True) as server:
        app, notifications = load_app(server.url, monkeypatch)
        app.config["NOTIFICATIONS_SEND_TIMEOUT"] = 3
        returned, refused = [], 0

        def restart():
            time.sleep(0.3)
            server.stop(keep_directory=True)
            time.sleep(1.0)
            server.start()

        with worker_process("reliability_app:celery", server.url, cwd=ROOT / "tests") as worker:
            restarter = threading.Thread(target=restart)
            restarter.start()
            with app.app_context():
                for i in range(150):
                    try:
                        returned.append(
                            notifications.send(Event(None, "test", f"n{i}", "b"))["event_id"]
                        )
                    except NotificationsUnavailable:
                        refused += 1
                    time.sleep(0.01)
            restarter.join()
            try:
                wait_for(lambda: set(returned) <= set(consumed(files["LOG"])), 60)
            except AssertionError:
                missing = set(returned) - set(consumed(files["LOG"]))
                raise AssertionError(
                    f"{len(missing)} of {len(returned)} returned sends not delivered "
                    f"({refused} refused); worker log:\n" + "".join(worker.output[-40:])
                ) from None
        log = consumed(files["LOG"])
    assert len(returned) >= 100  # most sends waited for Redis instead of failing
    assert set(returned) <= set(log)  # every send() that returned was delivered
    assert len(log) == len(set(log))  # and nothing twice
    assert len(returned) + refused == 150


def test_redis_down_when_a_consumer_finishes_does_not_run_it_again(
    files, monkeypatch, tmp_path, celery_app
):
    # The consumer ran; Redis goes away before its completion record is
    # written: the worker waits Redis out instead of failing the task (which
    # the sweeper or the broker would run again).
    with RedisServer(directory=tmp_path / "redis", appendonly=True) as server:
        app, notifications = load_app(server.url, monkeypatch)
        files["HOLD"].touch()
        with app.app_context():
            sent = notifications.send(Event(None, "test", "t", "b"))
        with worker_process("reliability_app:celery", server.url, cwd=ROOT / "tests") as worker:
            wait_for(lambda: files["STARTED"].exists(), 30)
            server.stop(keep_directory=True)
            files["HOLD"].unlink()  # the consumer finishes while Redis is down
            wait_for(lambda: consumed(files["LOG"]), 10)
            time.sleep(1.0)  # the record's write meets a closed Redis
            server.start()
            time.sleep(7)  # room for a wrong second run: visibility 2 s, redelivery 3 s
            output = "".join(worker.output[-40:])
        assert consumed(files["LOG"]) == [sent["event_id"]], output
