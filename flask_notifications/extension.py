"""The :class:`Notifications` Flask extension."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

import redis
from flask import Flask, current_app, has_app_context

from . import metrics
from ._config import apply_defaults, load_backend
from ._redis import blocking_client, own_client
from ._resolvers import ResolversMixin
from ._state import State
from ._streaming import StreamingMixin, _script_tag
from ._widget import inbox_widget
from .blueprint import make_blueprint
from .cli import cli as notifications_cli
from .consumers.store_consumer import StoreConsumer
from .delivery import log as delivery_log
from .delivery import registry
from .delivery import request as delivery
from .delivery.apps import bind_flask_app, celery_for, unproxy
from .event import Event
from .event_hub import EventHub, current_notifications, hub_id_for
from .inbox.model_events import ModelEvents
from .inbox.preferences import Preferences
from .inbox.store import Inbox
from .mobile.store import Devices
from .pubsub.backend import Backend
from .webpush.store import PushSubscriptions
from .workflows import scheduled

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger("flask_notifications")


class Notifications(StreamingMixin, ResolversMixin):
    """The Flask-Notifications extension.

    Hubs belong to the extension object, like blueprints, so they can be
    defined before :meth:`init_app`. ``app.extensions["notifications"]`` is
    this object; what is tied to one application (its Redis client, its
    Celery app, its backend class, its dispatcher) is kept per app.

    An extension registered on exactly one app also works outside an app
    context (in a script, a shell, at import time of a worker module), as
    Flask-Mail does: it then uses that app.

    :param app: the application to initialise right away.
    :param celery: passed on to :meth:`init_app`.
    :param broker: passed on to :meth:`init_app`.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        celery: Celery | None = None,
        broker: redis.Redis | Any = None,
    ) -> None:
        self._hubs: dict[str, EventHub] = {}
        self._identity_loader: Callable[[], Any] | None = None
        self._email_resolver: Callable[[str], str | None] | None = None
        self._locale_resolver: Callable[[str], Any] | None = None
        self._stream_authorizer: Callable[[str | None, str], bool] | None = None
        #: Stored notifications of the current app: see :class:`~flask_notifications.inbox.Inbox`.
        self.inbox = Inbox(self)
        #: Opt-outs of the current app: see :class:`~flask_notifications.inbox.Preferences`.
        self.preferences = Preferences()
        #: Browsers' Web Push subscriptions of the current app: see
        #: :class:`~flask_notifications.webpush.PushSubscriptions`.
        self.push_subscriptions = PushSubscriptions()
        #: Native apps' devices (push tokens) of the current app: see
        #: :class:`~flask_notifications.mobile.Devices`.
        self.devices = Devices()
        self._model_events = ModelEvents(self)
        # Per-app state, as Flask-SQLAlchemy 3 keeps its engines: never a module
        # global, never keyed by app.name (every app factory's apps share it).
        self._states: WeakKeyDictionary[Flask, State] = WeakKeyDictionary()
        if app is not None:
            self.init_app(app, celery=celery, broker=broker)

    # -- setup -----------------------------------------------------------------

    def init_app(
        self,
        app: Flask,
        *,
        celery: Celery | None = None,
        broker: redis.Redis | Any = None,
    ) -> None:
        """Register the extension on ``app``.

        :param app: the Flask application.
        :param celery: the Celery app that runs the consumers. When omitted,
            the app's Flask-CeleryExt Celery is used, or one is created with
            Flask-CeleryExt; its broker defaults to the notifications Redis.
        :param broker: the client handed to the backend (a :class:`redis.Redis`
            for the default backend). When omitted, a Redis client is built
            from ``NOTIFICATIONS_REDIS_URL``.
        :raises RuntimeError: if the extension is already registered on ``app``.
        :raises ConfigurationError: if the backend setting names no Backend class.
        """
        if "notifications" in app.extensions:
            raise RuntimeError(
                "Flask-Notifications is already registered on this app; "
                "create one Notifications per app or call init_app once"
            )
        config = app.config
        apply_defaults(config)
        backend_class = load_backend(config["NOTIFICATIONS_BACKEND"])
        if broker is None:
            # A blocking pool: when every connection is busy (thousands of
            # streams opening at once), callers wait for one instead of failing.
            client = blocking_client(config["NOTIFICATIONS_REDIS_URL"], config)
        else:
            client = own_client(broker, config)
        celery = celery_for(app) if celery is None else unproxy(celery)
        prefix = config["NOTIFICATIONS_REDIS_PREFIX"]
        app_key = f"{prefix}/{app.name}"
        registry.install()
        bind_flask_app(celery, app, app_key)

        app_metrics = metrics.install(app, app_key)
        self._states[app] = State(
            self, celery, client, backend_class, prefix, app_key, broker=broker, metrics=app_metrics
        )
        app.extensions["notifications"] = self
        app.jinja_env.globals["current_notifications"] = current_notifications
        app.jinja_env.globals["notifications_script"] = _script_tag
        app.jinja_env.globals["notifications_inbox"] = inbox_widget
        if config["NOTIFICATIONS_REGISTER_BLUEPRINT"]:
            app.register_blueprint(make_blueprint(), url_prefix=config["NOTIFICATIONS_URL_PREFIX"])
        app.cli.add_command(notifications_cli)

    def _app(self) -> Flask:
        """The app to work in: the current app when this extension is
        registered on it, else the one app it is registered on."""
        if has_app_context():
            app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
            if app in self._states:
                return app
        apps = list(self._states.keys())
        if len(apps) == 1:
            return apps[0]
        if not apps:
            raise RuntimeError(
                "Flask-Notifications is not initialised: call Notifications(app) "
                "or notifications.init_app(app) first"
            )
        raise RuntimeError(
            "this Notifications extension is registered on several apps: use it "
            "inside `with app.app_context():` of one of them"
        )

    @contextlib.contextmanager
    def _context(self) -> Iterator[State]:
        """Run in the app of :meth:`_app`, pushing its context unless it is current."""
        app = self._app()
        if has_app_context() and current_app._get_current_object() is app:  # type: ignore[attr-defined]
            yield self._states[app]
        else:
            with app.app_context():
                yield self._states[app]

    def _state(self) -> State:
        """The state of :meth:`_app` (no context pushed: for plain attributes)."""
        return self._states[self._app()]

    def inbox_hubs(self) -> list[EventHub]:
        """The hubs that carry ``unread_count`` events: those with a
        :class:`~flask_notifications.consumers.StoreConsumer`, and the one named
        by ``NOTIFICATIONS_INBOX_HUB``."""
        label = self._app().config.get("NOTIFICATIONS_INBOX_HUB")
        return [
            hub
            for hub in self._hubs.values()
            if hub.label == label
            or any(isinstance(c, StoreConsumer) for c in hub._consumers.values())
        ]

    # -- model events -------------------------------------------------------------

    def on_insert(self, model: type, factory: Callable[[Any], Event | None]) -> None:
        """Send ``factory(instance)`` for each committed insert of ``model``.

        The event is built when the session flushes and sent only after the
        transaction commits (inside an app context); a rollback sends nothing.

        :param model: a SQLAlchemy mapped class (subclasses match too).
        :param factory: builds the :class:`~flask_notifications.event.Event`
            (title, body, recipients, icon, data...) or returns ``None``.
        """
        self._model_events.register("insert", model, factory)

    def on_update(self, model: type, factory: Callable[[Any], Event | None]) -> None:
        """Like :meth:`on_insert`, for committed changes to existing instances.

        :param model: a SQLAlchemy mapped class.
        :param factory: builds the event, or returns ``None``.
        """
        self._model_events.register("update", model, factory)

    # -- hubs ------------------------------------------------------------------

    def create_hub(
        self,
        label: str,
        public: bool | None = None,
        *,
        readers: Callable[[str | None], bool] | None = None,
    ) -> EventHub:
        """Return the hub named ``label``, creating it on first use.

        Who sees what on a hub's streams: events with recipients reach those
        recipients' streams. Events without recipients (broadcasts) reach
        every stream of a public hub; on a private hub, only the streams of
        users that ``readers`` (or, without it, the
        :meth:`stream_authorizer`) admits. A private hub with neither sends
        its broadcasts to nobody, and a warning says so when streaming starts.

        :param label: a fixed name (never randomised: workers find the hub by
            the id derived from it).
        :param public: let anonymous clients stream the hub's broadcast
            events; hubs are private by default. ``None`` keeps an existing
            hub's setting.
        :param readers: ``readers(identity) -> bool``, asked when a stream of
            this private hub opens: whether that user reads its broadcasts.
            ``None`` keeps an existing hub's rule.
        """
        hub = self._hubs.get(hub_id_for(label)) if isinstance(label, str) else None
        if hub is None:
            hub = EventHub(label, public=bool(public))
            # setdefault: two threads creating one label get the same hub.
            hub = self._hubs.setdefault(hub.hub_id, hub)
        elif public is not None:
            hub.public = bool(public)
        if readers is not None:
            if not callable(readers):
                raise TypeError(f"readers must be callable, not {type(readers).__name__}")
            hub.readers = readers
        return hub

    def get_hub(self, label: str) -> EventHub | None:
        """Return the hub labelled ``label``, if it exists.

        :param label: a hub label.
        """
        return self._hubs.get(hub_id_for(label)) if isinstance(label, str) else None

    def get_hub_by_id(self, hub_id: str) -> EventHub | None:
        """Return the hub whose ``hub_id`` is ``hub_id``, if any.

        :param hub_id: a hub id.
        """
        return self._hubs.get(hub_id)

    @property
    def hubs(self) -> tuple[EventHub, ...]:
        """Every hub created on this extension, in creation order."""
        return tuple(self._hubs.values())

    # -- per-app objects ---------------------------------------------------------

    @property
    def celery(self) -> Celery:
        """The current application's Celery app (outside an app context: the
        one app's, for an extension registered on one app)."""
        return self._state().celery

    @property
    def redis(self) -> redis.Redis | Any:
        """The current application's Redis client: on a pool the library sized
        itself, with the connection settings of ``init_app(broker=...)`` when
        one was given (see :doc:`/deploying`); a broker client that is not a
        plain :class:`redis.Redis` is returned as given."""
        return self._state().redis

    def create_backend(self) -> Backend:
        """Build a new backend for the current application (outside an app
        context: the one app's, for an extension registered on one app).

        Each backend holds its own subscription; publishing through any of
        them reaches every subscriber.

        :raises RuntimeError: if no app can be chosen.
        """
        with self._context() as state:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            return state.backend_class.from_app(app, state.redis)

    def deliveries(self, event_id: str) -> list[dict[str, Any]]:
        """The delivery log of an event: one record per recipient and channel
        (see :func:`flask_notifications.delivery.log.deliveries` for their shape).

        :param event_id: the event's id.
        :raises RuntimeError: if no app can be chosen.
        """
        with self._context():
            return delivery_log.deliveries(event_id)

    # -- sending -------------------------------------------------------------------

    def send(
        self,
        event: Event | str | bytes | Mapping[str, Any],
        *,
        at: datetime | None = None,
        delay: timedelta | None = None,
    ) -> Event:
        """Validate ``event`` and hand it to every hub, now or later.

        Each hub whose filter passes runs each of its consumers in a Celery
        worker. The event costs one broker message (JSON, with ``expires=``
        when the event expires), whatever the number of consumers: one
        consumer in all, its own task; several, the event task, which runs
        them in the worker (consumers declared
        :attr:`~flask_notifications.consumers.consumer.Consumer.own_task` get
        a task of their own from there). See :mod:`flask_notifications.delivery`.
        All filters run before anything is enqueued, so an invalid event or
        a failing filter sends nothing. An event that has already expired is
        not enqueued at all.

        An ``event_id`` already sent within ``NOTIFICATIONS_DEDUP_TTL`` is
        ignored. When Redis or the broker does not answer, ``send()`` retries
        until ``NOTIFICATIONS_SEND_TIMEOUT``, then raises: it never returns
        for an event that was not enqueued.

        With ``at`` or ``delay``, the event is validated now and kept in the
        database as a durable timer; a worker sends it when it is due (within
        ``NOTIFICATIONS_TIMER_POLL``), deduplicated by event id, unless
        :meth:`cancel` cancelled it or it expires first. See :doc:`/workflows`.

        :param event: an :class:`~flask_notifications.event.Event`, its JSON
            form, or a mapping of its fields.
        :param at: send it at this time: an aware datetime (naive ones are
            refused); a past time sends now.
        :param delay: send it after this long.
        :returns: the validated event (with its generated ``event_id``).
        :raises InvalidEventError: if the event is malformed or too large.
        :raises InvalidScheduleError: for both ``at`` and ``delay``, or a bad one.
        :raises TypeError: if ``event`` is none of the accepted types.
        :raises NotificationsUnavailable: if Redis or the broker stayed down.
        """
        with self._context() as state:
            return delivery.send(state, tuple(self._hubs.values()), event, at, delay)

    def cancel(self, event_id: str | int) -> bool:
        """Cancel a scheduled send (see :meth:`send`).

        :param event_id: the scheduled event's id.
        :returns: ``True`` if it was pending and will not be sent; ``False``
            if it was sent already or is being sent now, or is unknown.
        """
        with self._context():
            return scheduled.cancel(event_id)
