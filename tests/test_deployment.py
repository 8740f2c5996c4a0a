"""What real deployments do: app factories, several apps and extensions in one
process, one shared Redis, a crowd behind one address, a user's own Redis client."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis
from flask import Flask, request
from sqlalchemy import Column, Integer, String, create_engine
from sqlalchemy.orm import Session, declarative_base

from flask_notifications import Event, Notifications
from flask_notifications.consumers import PushConsumer
from flask_notifications.signals import event_sent

from .conftest import ROOT, wait_for

# -- app factories -------------------------------------------------------------------------------


def create_app(redis_url: str, tmp_path: Path, got: list[str], **config: object) -> Flask:
    """An app factory as users write them: every app has the same name."""
    app = Flask("factory_app", instance_path=str(tmp_path / "instance"))
    app.config.update(
        NOTIFICATIONS_REDIS_URL=redis_url, broker_connection_retry_on_startup=True, **config
    )
    notifications = Notifications(app)
    notifications.create_hub("Hub").register_consumer(
        lambda event: got.append(event["title"]), celery_task_name="tests.deployment.factory"
    )
    return app


def test_same_named_apps_with_different_brokers_route_correctly(
    redis_server, redis_url, tmp_path, worker
):
    first_url, second_url = (f"redis://127.0.0.1:{redis_server.port}/{db}" for db in (1, 2))
    got: dict[str, list[str]] = {"first": [], "second": []}
    first = create_app(first_url, tmp_path / "1", got["first"])
    second = create_app(second_url, tmp_path / "2", got["second"])
    first_celery = first.extensions["notifications"].celery
    second_celery = second.extensions["notifications"].celery
    assert first_celery is not second_celery
    # The second create_app() did not rewrite the first app's broker.
    assert first_celery.conf.broker_url == first_url
    assert second_celery.conf.broker_url == second_url
    for name, app in (("first", first), ("second", second)):
        with app.app_context():
            app.extensions["notifications"].send(Event(None, "t", f"to {name}", ""))
    with worker(first):  # consumes the first broker's queue only
        wait_for(lambda: got["first"])
    with worker(second):
        wait_for(lambda: got["second"])
    assert got == {"first": ["to first"], "second": ["to second"]}


def test_apps_sharing_one_celery_app_are_told_apart_by_prefix(redis_url, tmp_path, worker):
    from celery import Celery

    shared = Celery("shared", set_as_current=False, broker=redis_url)
    got: dict[str, list[str]] = {"a": [], "b": []}
    apps = {}
    for prefix in ("a", "b"):
        app = Flask("factory_app", instance_path=str(tmp_path / prefix))
        app.config.update(NOTIFICATIONS_REDIS_URL=redis_url, NOTIFICATIONS_REDIS_PREFIX=prefix)
        notifications = Notifications(app, celery=shared)
        notifications.create_hub("Hub").register_consumer(
            lambda event, _p=prefix: got[_p].append(event["title"]),
            celery_task_name="tests.deployment.shared",
        )
        apps[prefix] = app
    with worker(apps["b"]):
        for prefix, app in apps.items():
            with app.app_context():
                app.extensions["notifications"].send(Event(None, "t", f"to {prefix}", ""))
        wait_for(lambda: got["a"] and got["b"])
    assert got == {"a": ["to a"], "b": ["to b"]}


# -- model events --------------------------------------------------------------------------------

Base = declarative_base()


class Post(Base):  # type: ignore[misc,valid-type]
    __tablename__ = "deployment_posts"
    id = Column(Integer, primary_key=True)
    title = Column(String(100))


def test_two_extensions_and_one_commit_send_once(make_app, tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'posts.sqlite'}")
    Base.metadata.create_all(engine)
    first, second = make_app(), make_app()
    apps = {}
    for app in (first, second):
        notifications = Notifications(app)
        notifications.create_hub("Posts").register_consumer(
            lambda event: None, celery_task_name="tests.deployment.posts"
        )
        notifications.on_insert(Post, lambda post: Event(None, "post", post.title, ""))
        apps[app] = notifications
    sent: list[tuple[Flask, str]] = []

    def record(sender: Flask, event: Event, **_: object) -> None:
        sent.append((sender, event["title"]))

    event_sent.connect(record)
    try:
        with first.app_context(), Session(engine) as session:
            session.add(Post(title="hello"))
            session.commit()
        with second.app_context(), Session(engine) as session:
            session.add(Post(title="again"))
            session.commit()
    finally:
        event_sent.disconnect(record)
    # One send per commit, by the app whose context committed.
    assert sent == [(first, "hello"), (second, "again")]
    engine.dispose()


# -- one Redis, several apps ---------------------------------------------------------------------


def test_two_prefixes_on_one_redis_see_nothing_of_each_other(make_app, redis_client, worker):
    from flask_notifications import reliability

    apps = {}
    for prefix in ("shop", "blog"):
        app = make_app(NOTIFICATIONS_REDIS_PREFIX=prefix, CELERY_TASK_DEFAULT_QUEUE=prefix)
        notifications = Notifications(app)
        hub = notifications.create_hub("News", public=True)
        with app.app_context():
            hub.register_consumer(PushConsumer(notifications.redis, hub))
        apps[prefix] = (app, notifications, hub)

    shop, shop_ext, shop_hub = apps["shop"]
    blog, blog_ext, blog_hub = apps["blog"]
    assert shop_hub.hub_id == blog_hub.hub_id  # same label: only the prefix tells them apart
    shop_client, blog_client = shop.test_client(), blog.test_client()
    blog_stream = blog_client.get("/notifications/stream/News", buffered=False)
    shop_stream = shop_client.get("/notifications/stream/News", buffered=False)
    blog_frames, shop_frames = iter(blog_stream.response), iter(shop_stream.response)
    assert b"event: ready" in next(blog_frames) and b"event: ready" in next(shop_frames)
    with worker(shop):
        with shop.app_context():
            shop_ext.send(Event(None, "sale", "shop only", ""))
            reliability.add_dead_letter("t", "h", "k", "{}", OSError("x"))
        frame = next(shop_frames)
        while b"shop only" not in frame:
            frame = next(shop_frames)
    with blog.app_context():
        assert reliability.dead_letters() == []
        assert blog_ext.dispatcher.backend.last_id(blog_hub.hub_id) is None
    with shop.app_context():
        assert len(reliability.dead_letters()) == 1
        assert shop_ext.dispatcher.backend.last_id(shop_hub.hub_id) is not None
    # Every key the extension wrote carries the prefix (Celery's queues aside).
    ours = [k.decode() for k in redis_client.keys("*") if not k.startswith((b"_kombu", b"unacked"))]
    ours = [k for k in ours if k not in ("shop", "blog")]  # the two Celery queues
    assert ours and all(k.startswith("shop:") for k in ours), ours
    channels = {c.decode() for c in redis_client.pubsub_channels()}
    assert f"shop:{shop_hub.hub_id}" in channels and f"blog:{blog_hub.hub_id}" in channels
    for response in (blog_stream, shop_stream):
        response.close()
    for app, notifications, _ in apps.values():
        with app.app_context():
            notifications.shutdown()


def test_a_task_of_another_app_on_a_shared_queue_is_handed_back_never_run_here(make_app, worker):
    # Two apps on one Redis, both on Celery's default queue (the set-up the
    # docs warn against): a worker of one never runs the other's task with its
    # own hubs; it puts it back for a worker of the right app.
    got: dict[str, list[str]] = {"shop": [], "blog": []}
    apps = {}
    for prefix in ("shop", "blog"):
        app = make_app(NOTIFICATIONS_REDIS_PREFIX=prefix)
        notifications = Notifications(app)
        hub = notifications.create_hub("News")
        hub.register_consumer(
            lambda event, _p=prefix: got[_p].append(event["title"]),
            celery_task_name=f"tests.shared_queue.{prefix}",
        )
        apps[prefix] = app
    shop, blog = apps["shop"], apps["blog"]
    handed_back: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: handed_back.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("flask_notifications")
    logger.addHandler(handler)
    try:
        _shared_queue(shop, blog, got, worker, handed_back)
    finally:
        logger.removeHandler(handler)


def _shared_queue(shop, blog, got, worker, handed_back):
    with worker(shop):
        with blog.app_context():
            blog.extensions["notifications"].send(Event(None, "t", "for the blog", ""))
        with shop.app_context():
            shop.extensions["notifications"].send(Event(None, "t", "for the shop", ""))
        wait_for(lambda: got["shop"] == ["for the shop"], 20)
        # The blog's task was taken by this worker (one queue) and handed back.
        wait_for(lambda: any("blog/tests" in m for m in handed_back), 20)
        assert got == {"shop": ["for the shop"], "blog": []}
        with worker(blog):  # both up: the blog's task ends up with its own worker
            wait_for(lambda: got["blog"] == ["for the blog"], 30)
    assert got == {"shop": ["for the shop"], "blog": ["for the blog"]}


@pytest.mark.parametrize("bad", ["", "a:b", "with space", "{tag}", 3, "x" * 65])
def test_the_prefix_setting_is_checked(make_app, bad):
    from flask_notifications import ConfigurationError

    with pytest.raises(ConfigurationError, match="NOTIFICATIONS_REDIS_PREFIX"):
        Notifications(make_app(NOTIFICATIONS_REDIS_PREFIX=bad))


# -- import side effects -------------------------------------------------------------------------


def test_importing_any_module_adds_no_route_and_no_listener():
    script = """
import gc, importlib, json, pkgutil
from flask import Blueprint
import flask_notifications
from celery.signals import worker_ready, worker_shutdown
from sqlalchemy import event
from sqlalchemy.orm import Session
prefix = "flask_notifications."
names = [m.name for m in pkgutil.walk_packages(flask_notifications.__path__, prefix)]
for name in names:
    importlib.import_module(name)
blueprints = [o for o in gc.get_objects() if isinstance(o, Blueprint)]
from flask_notifications.inbox import model_events
print(json.dumps({
    "modules": len(names),
    "blueprint_routes": sum(len(b.deferred_functions) for b in blueprints),
    "session_listeners": any(
        event.contains(Session, n, getattr(model_events, "_" + n))
        for n in ("after_flush", "after_commit", "after_soft_rollback")
    ),
    "worker_signals": len(worker_ready.receivers or []) + len(worker_shutdown.receivers or []),
}))
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["modules"] > 30
    assert found == {
        "modules": found["modules"],
        "blueprint_routes": 0,
        "session_listeners": False,
        "worker_signals": 0,
    }


def test_each_app_gets_its_own_routes(make_app):
    first, second = make_app(), make_app(NOTIFICATIONS_URL_PREFIX="/n")
    Notifications(first)
    Notifications(second)
    rules = {str(r) for r in second.url_map.iter_rules()}
    assert "/n/stream/<path:label>" in rules
    assert "/notifications/stream/<path:label>" not in rules
    assert "/notifications/stream/<path:label>" in {str(r) for r in first.url_map.iter_rules()}


# -- stream limits: concurrent, per identity and per address ------------------------------------


def _open(client, label: str = "News", **kwargs):
    response = client.get(f"/notifications/stream/{label}", buffered=False, **kwargs)
    if response.status_code == 200:
        next(iter(response.response))  # the preamble and the ready event
    return response


@pytest.fixture
def limited(make_app):
    def start(**config: object):
        app = make_app(**config)
        notifications = Notifications(app)
        notifications.create_hub("News", public=True)
        notifications.create_hub("Inbox")
        notifications.identity_loader(lambda: request.headers.get("X-User"))
        return app, notifications

    yield start


def test_a_crowd_behind_one_address_opens_a_public_hub_with_the_defaults(limited):
    app, notifications = limited()
    client = app.test_client()
    # The old 30-a-minute rate per address refused the 31st browser of an office.
    streams = [_open(client) for _ in range(300)]
    assert {r.status_code for r in streams} == {200}
    for response in streams:
        response.close()
    with app.app_context():
        assert notifications.dispatcher.stream_count == 0
        assert notifications.dispatcher.per_address == 10_000
        notifications.shutdown()


def test_streams_are_capped_per_user_while_open_not_per_minute(limited):
    app, notifications = limited(NOTIFICATIONS_STREAMS_PER_USER=3)
    client = app.test_client()
    alice = {"X-User": "alice"}
    held = [_open(client, "Inbox", headers=alice) for _ in range(3)]
    assert {r.status_code for r in held} == {200}
    refused = _open(client, "Inbox", headers=alice)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "NOTIFICATIONS_STREAMS_PER_USER" in refused.get_json()["error"]
    bob = _open(client, "Inbox", headers={"X-User": "bob"})
    assert bob.status_code == 200  # per identity
    held.pop().close()  # a closed stream frees its place at once
    again = _open(client, "Inbox", headers=alice)
    assert again.status_code == 200
    for response in [*held, bob, again]:
        response.close()
    with app.app_context():
        notifications.shutdown()


def test_anonymous_streams_are_capped_per_address(limited):
    app, notifications = limited(NOTIFICATIONS_STREAMS_PER_ADDRESS=2)
    client = app.test_client()
    here = {"environ_base": {"REMOTE_ADDR": "192.0.2.1"}}
    held = [_open(client, **here) for _ in range(2)]
    assert _open(client, **here).status_code == 429
    elsewhere = _open(client, environ_base={"REMOTE_ADDR": "192.0.2.2"})
    assert elsewhere.status_code == 200
    signed_in = _open(client, headers={"X-User": "carol"}, **here)
    assert signed_in.status_code == 200  # users count per identity, not per address
    for response in [*held, elsewhere, signed_in]:
        response.close()
    with app.app_context():
        notifications.shutdown()


def test_a_process_caps_its_streams_in_all(limited):
    app, notifications = limited(NOTIFICATIONS_MAX_STREAMS=2)
    client = app.test_client()
    held = [_open(client, headers={"X-User": f"u{i}"}) for i in range(2)]
    full = _open(client, headers={"X-User": "late"})
    assert full.status_code == 503 and "NOTIFICATIONS_MAX_STREAMS" in full.get_json()["error"]
    for response in held:
        response.close()
    with app.app_context():
        notifications.shutdown()


def test_opening_a_stream_needs_no_redis_round_trip(limited, redis_client):
    app, notifications = limited()
    client = app.test_client()
    first = _open(client)  # starts the dispatcher, which reads each hub's last id once

    def commands() -> int:
        return int(redis_client.info("stats")["total_commands_processed"])

    before = commands()
    streams = [_open(client) for _ in range(50)]
    streams += [_open(client, "Inbox", headers={"X-User": f"user{i}"}) for i in range(50)]
    assert {r.status_code for r in streams} == {200}
    assert commands() - before < 10  # the INFO calls themselves, not 100 stream openings
    for response in [first, *streams]:
        response.close()
    with app.app_context():
        notifications.shutdown()


# -- a user's own Redis client -------------------------------------------------------------------


def test_a_broker_client_with_a_tiny_pool_caps_nothing(make_app, redis_url, worker):
    """init_app(broker=...) with a pool that raises when full: the library works
    on a pool of its own, so 20 threads sending at once all succeed."""
    user_pool = redis.ConnectionPool.from_url(redis_url, max_connections=2)
    broker = redis.StrictRedis(connection_pool=user_pool)
    app = make_app()
    notifications = Notifications()
    notifications.init_app(app, broker=broker)
    got: list[str] = []
    notifications.create_hub("Hub").register_consumer(
        lambda event: got.append(event["event_id"]), celery_task_name="tests.deployment.pool"
    )
    errors: list[BaseException] = []
    barrier = threading.Barrier(20)

    def send_five() -> None:
        with app.app_context():
            barrier.wait()
            for _ in range(5):
                try:
                    notifications.send(Event(None, "t", "x", ""))
                except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                    errors.append(exc)

    threads = [threading.Thread(target=send_five) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    with worker(app):
        wait_for(lambda: len(got) == 100, timeout=30)
    assert len(set(got)) == 100
    assert user_pool.max_connections == 2  # the user's pool is left as it was
