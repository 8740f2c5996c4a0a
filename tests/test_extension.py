"""Notifications: the three documented init forms, config, proxies, Celery set-up."""

from __future__ import annotations

import pytest
import redis
from celery import Celery
from flask import Flask, render_template_string
from flask_celeryext import FlaskCeleryExt

from flask_notifications import (
    ConfigurationError,
    Event,
    EventHub,
    InvalidEventError,
    Notifications,
    current_notifications,
)
from flask_notifications.event_hub import current_notifications as documented_proxy
from flask_notifications.pubsub.backend import Backend
from flask_notifications.pubsub.redis_pubsub import RedisPubSub


def test_init_with_app(app):
    notifications = Notifications(app=app)
    assert app.extensions["notifications"] is notifications
    with app.app_context():
        assert current_notifications._get_current_object() is notifications


def test_init_app_later(app):
    notifications = Notifications()
    hub = notifications.create_hub("Early")  # hubs may exist before init_app
    notifications.init_app(app=app)
    with app.app_context():
        assert current_notifications.create_hub("Early") is hub


def test_init_app_with_celery_and_broker(make_app, redis_url):
    app = make_app()
    celery = FlaskCeleryExt(app).celery
    broker = redis.StrictRedis.from_url(redis_url)
    notifications = Notifications()
    notifications.init_app(app=app, celery=celery, broker=broker)
    with app.app_context():
        # FlaskCeleryExt hands out Celery's current-app proxy: the object behind it is kept
        assert notifications.celery is celery._get_current_object()
        # The library works on a pool of its own size, with the broker's settings.
        own = notifications.redis.connection_pool
        assert isinstance(own, redis.BlockingConnectionPool) and own is not broker.connection_pool
        assert own.max_connections == app.config["NOTIFICATIONS_REDIS_MAX_CONNECTIONS"]
        settings = broker.connection_pool.connection_kwargs
        assert {k: own.connection_kwargs[k] for k in ("host", "port", "db")} == {
            k: settings[k] for k in ("host", "port", "db")
        }
        assert notifications.redis.ping()


def test_registering_twice_raises(app):
    notifications = Notifications(app)
    with pytest.raises(RuntimeError, match="already registered"):
        notifications.init_app(app)
    with pytest.raises(RuntimeError):
        Notifications(app)


def test_one_extension_many_apps(make_app, redis_url):
    notifications = Notifications()
    first, second = make_app(), make_app(NOTIFICATIONS_MAX_EVENT_BYTES=1000)
    notifications.init_app(first)
    notifications.init_app(second)
    hub = notifications.create_hub("Shared")
    for app in (first, second):
        with app.app_context():
            assert current_notifications.create_hub("Shared") is hub
    assert first.config["NOTIFICATIONS_MAX_EVENT_BYTES"] == 65536
    assert second.config["NOTIFICATIONS_MAX_EVENT_BYTES"] == 1000


def test_config_defaults():
    app = Flask("defaults")
    Notifications(app)
    assert app.config["NOTIFICATIONS_REDIS_URL"] == "redis://localhost:6379/0"
    assert (
        app.config["NOTIFICATIONS_BACKEND"] == "flask_notifications.pubsub.redis_pubsub.RedisPubSub"
    )
    assert app.config["NOTIFICATIONS_MAX_EVENT_BYTES"] == 64 * 1024
    assert app.config["CELERY_BROKER_URL"] == "redis://localhost:6379/0"
    assert app.config["broker_connection_retry_on_startup"] is True
    assert app.extensions["notifications"].celery.conf.broker_connection_retry_on_startup is True


def test_redis_url_falls_back_to_redis_url_key():
    app = Flask("fallback")
    app.config["REDIS_URL"] = "redis://127.0.0.1:6390/3"
    Notifications(app)
    assert app.config["NOTIFICATIONS_REDIS_URL"] == "redis://127.0.0.1:6390/3"
    kwargs = app.extensions["notifications"].redis.connection_pool.connection_kwargs
    assert (kwargs["port"], kwargs["db"]) == (6390, 3)


def test_notifications_redis_url_wins():
    app = Flask("explicit")
    app.config.update(
        REDIS_URL="redis://127.0.0.1:6390/3", NOTIFICATIONS_REDIS_URL="redis://127.0.0.1:6391/4"
    )
    Notifications(app)
    kwargs = app.extensions["notifications"].redis.connection_pool.connection_kwargs
    assert (kwargs["port"], kwargs["db"]) == (6391, 4)


def test_existing_broker_setting_is_respected():
    app = Flask("broker")
    app.config["CELERY_BROKER_URL"] = "redis://127.0.0.1:6399/9"
    Notifications(app)
    assert app.extensions["notifications"].celery.conf.broker_url == "redis://127.0.0.1:6399/9"


def test_celery_is_built_with_flask_celeryext_and_json_only(app):
    Notifications(app)
    celery = app.extensions["notifications"].celery
    assert app.extensions["flask-celeryext"].celery is celery
    assert set(celery.conf.accept_content) == {"json"}
    assert celery.conf.task_serializer == "json"
    assert celery.conf.result_serializer == "json"


def test_celery_app_created_later_does_not_take_over(app):
    Notifications(app)
    celery = app.extensions["notifications"].celery
    Celery("created-later", broker="memory://")  # becomes Celery's *current* app
    assert app.extensions["notifications"].celery is celery
    assert celery.conf.broker_url == app.config["NOTIFICATIONS_REDIS_URL"]


def test_existing_flask_celeryext_is_reused(app):
    ext = FlaskCeleryExt(app)
    Notifications(app)
    assert app.extensions["notifications"].celery is ext.celery._get_current_object()


class CustomBackend(RedisPubSub):
    pass


@pytest.mark.parametrize("key", ["BACKEND", "NOTIFICATIONS_BACKEND"])
def test_backend_key_is_honoured(make_app, key):
    app = make_app(**{key: f"{__name__}.CustomBackend"})
    notifications = Notifications(app)
    with app.app_context():
        assert type(notifications.create_backend()) is CustomBackend


@pytest.mark.parametrize(
    "path",
    ["flask_notifications.pubsub.nope.Backend", "no_such_module_at_all", f"{__name__}.Missing"],
)
def test_wrong_backend_path_names_the_path(make_app, path):
    app = make_app(BACKEND=path)
    with pytest.raises(ConfigurationError, match=path.replace(".", r"\.")):
        Notifications(app)
    assert "notifications" not in app.extensions


def test_backend_that_is_not_a_backend_is_refused(make_app):
    app = make_app(NOTIFICATIONS_BACKEND="collections.OrderedDict")
    with pytest.raises(ConfigurationError, match="collections.OrderedDict.*Backend"):
        Notifications(app)


def test_create_backend_default(app, notifications):
    with app.app_context():
        backend = notifications.create_backend()
        other = notifications.create_backend()
    assert isinstance(backend, RedisPubSub) and isinstance(backend, Backend)
    assert backend is not other
    assert backend.redis is app.extensions["notifications"].redis


def test_current_notifications_is_a_local_proxy():
    from werkzeug.local import LocalProxy

    assert isinstance(current_notifications, LocalProxy)


def test_current_notifications_outside_app_and_uninitialised():
    with pytest.raises(RuntimeError):
        current_notifications.hubs  # noqa: B018
    app = Flask("bare")
    with app.app_context(), pytest.raises(RuntimeError, match="not initialised"):
        current_notifications.hubs  # noqa: B018
    assert documented_proxy is current_notifications


def test_current_notifications_in_jinja(app, notifications):
    notifications.create_hub("Alpha")
    with app.app_context():
        out = render_template_string(
            "{{ current_notifications.hubs|map(attribute='label')|join(',') }}"
        )
    assert out == "Alpha"


def test_create_hub_same_label_same_hub(notifications):
    hub = notifications.create_hub("TestHub")
    assert isinstance(hub, EventHub)
    assert notifications.create_hub("TestHub") is hub
    assert notifications.create_hub("Other") is not hub
    assert notifications.hubs == (hub, notifications.create_hub("Other"))
    assert notifications.get_hub_by_id(hub.hub_id) is hub
    assert notifications.get_hub_by_id("nope") is None
    with pytest.raises(ValueError):
        notifications.create_hub("")
    with pytest.raises(TypeError):
        notifications.create_hub(None)


def test_an_unbound_extension_outside_a_context_raises_clearly():
    with pytest.raises(RuntimeError, match="not initialised"):
        Notifications().send(Event(None, "t", "a", "b"))


def test_an_extension_on_several_apps_needs_a_context(make_app):
    notifications = Notifications()
    notifications.init_app(make_app())
    notifications.init_app(make_app())
    with pytest.raises(RuntimeError, match="several apps"):
        notifications.send(Event(None, "t", "a", "b"))


def test_send_rejects_wrong_types(app, notifications):
    with app.app_context():
        with pytest.raises(TypeError):
            notifications.send(42)
        with pytest.raises(InvalidEventError):
            notifications.send({"event_type": "t"})


def test_a_celery_app_passed_in_is_used_as_is(make_app):
    celery = Celery("given", set_as_current=False)
    app = make_app()
    Notifications(app, celery=celery)
    assert app.extensions["notifications"].celery is celery
    assert "flask-celeryext" not in app.extensions
