"""The :class:`EventHub`: a filter and the consumers it feeds.

Also home of :data:`current_notifications` and the :func:`register_consumer`
decorator, where the original documentation placed them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

from werkzeug.local import LocalProxy

from ._state import get_state
from .consumers.consumer import Consumer, FunctionConsumer
from .consumers.store_consumer import StoreConsumer
from .delivery.registry import ensure_task
from .errors import ConfigurationError
from .event_filter import EventFilter
from .filters.always import Always
from .workflows.throttle import Throttle

if TYPE_CHECKING:
    from celery import Celery

    from .extension import Notifications

C = TypeVar("C", bound=Callable[..., Any])


def hub_id_for(label: str) -> str:
    """Return the hub id for ``label``: a hash, the same in every process.

    :param label: the hub's label.
    """
    return hashlib.blake2b(label.encode("utf-8"), digest_size=16).hexdigest()


class EventHub:
    """A filter plus the consumers that receive the events passing it.

    Create hubs with :meth:`Notifications.create_hub
    <flask_notifications.Notifications.create_hub>`; a hub starts with the
    :class:`~flask_notifications.filters.Always` filter and no consumers.

    :param label: a fixed, human-readable name. Workers find the hub by the
        id derived from it, so it must not be randomised.
    :param celery: the Celery app, as 0.1's ``EventHub(label, celery)`` took
        it; kept as :attr:`celery`. Consumer tasks are shared tasks, known to
        every Celery app, and run by the sending application's Celery app, so
        it may be omitted.
    :param public: whether anonymous clients may stream the hub's broadcast
        events; a private hub's stream needs an identity. Keyword-only.
    :raises TypeError: if ``label`` is not a string, or a boolean is passed
        as ``celery`` (``public`` must be given by keyword).
    """

    def __init__(self, label: str, celery: Celery | None = None, *, public: bool = False) -> None:
        if not isinstance(label, str):
            raise TypeError(f"a hub label must be a string, not {type(label).__name__}")
        if not label:
            raise ValueError("a hub label must not be empty")
        if isinstance(celery, bool):
            raise TypeError("EventHub(label, celery): pass public= by keyword")
        self.label = label
        #: The Celery app given to the constructor, or ``None``.
        self.celery = celery
        #: Whether anonymous clients may stream this hub's broadcast events.
        self.public = bool(public)
        #: Who may read the broadcasts of a private hub: ``readers(identity) -> bool``
        #: (see :meth:`Notifications.create_hub
        #: <flask_notifications.Notifications.create_hub>`); ``None``: the
        #: stream authorizer decides, and without one nobody does.
        self.readers: Callable[[str | None], bool] | None = None
        #: Stable identifier derived from the label (a hex digest).
        self.hub_id = hub_id_for(label)
        #: The hub's filter; set it with :meth:`filter_by`.
        self.filter: EventFilter = Always()
        self._consumers: dict[str, Consumer] = {}
        self._unread_after: dict[str, timedelta] = {}
        # Read by send() without a lock; replaced whole on every change: the
        # consumers enqueued at once, and those run if unread (name, seconds).
        self._names: tuple[str, ...] = ()
        self._escalating: tuple[tuple[str, float], ...] = ()
        # Read by the workers: see throttle().
        self._throttle: Throttle | None = None

    def throttle(self, limit: int = 5, per: timedelta = timedelta(minutes=1)) -> EventHub:
        """Deliver at most ``limit`` of this hub's events per ``per`` to each
        recipient; hold the others and deliver them as one summary event
        (``event_type`` ``"summary"``) when the recipient's window ends.

        The hub's :class:`~flask_notifications.consumers.StoreConsumer` still
        stores every event; every other consumer gets each event narrowed to
        the recipients the throttle lets through. Broadcasts (no recipients)
        and summaries are not throttled. Set it where the workers see it
        (where the hub is built, in the module the worker imports). See
        :doc:`/workflows`, Throttle.

        :param limit: deliveries per window and recipient, at least 1.
        :param per: the window (a :class:`~datetime.timedelta` of at least one second).
        :returns: the hub, so calls can be chained.
        :raises InvalidThrottleError: for a bad ``limit`` or ``per`` (a
            :class:`ValueError`).
        """
        self._throttle = Throttle.check(limit, per)
        return self

    @property
    def throttling(self) -> Throttle | None:
        """The hub's throttle (``limit``, ``per`` in seconds), or ``None``."""
        return self._throttle

    def filter_by(self, event_filter: EventFilter) -> EventHub:
        """Replace the hub's filter.

        :param event_filter: any :class:`~flask_notifications.event_filter.EventFilter`,
            usually composed with ``&``, ``|``, ``^`` and ``~``.
        :returns: the hub, so calls can be chained.
        """
        if not isinstance(event_filter, EventFilter):
            raise TypeError(f"filter_by() takes an EventFilter, not {type(event_filter).__name__}")
        self.filter = event_filter
        return self

    @overload
    def register_consumer(
        self,
        consumer: None = None,
        *,
        celery_task_name: str | None = None,
        if_unread_after: timedelta | None = None,
    ) -> Callable[[C], C]: ...

    @overload
    def register_consumer(
        self,
        consumer: C,
        *,
        celery_task_name: str | None = None,
        if_unread_after: timedelta | None = None,
    ) -> C: ...

    def register_consumer(
        self,
        consumer: Any = None,
        *,
        celery_task_name: str | None = None,
        if_unread_after: timedelta | None = None,
    ) -> Any:
        """Register a consumer; usable three ways::

            @hub.register_consumer
            def log(event): ...

            @hub.register_consumer(celery_task_name="app.write_to_file")
            def write_to_file(event, *args, **kwargs): ...

            hub.register_consumer(PushConsumer(redis, hub.hub_id))

        Registering the same consumer (or function) again, or a consumer equal
        to a registered one (same class, same configuration), does nothing.

        With ``if_unread_after``, the consumer runs later, and only for the
        recipients who have not read the event's stored notification by then
        (the event narrowed to them); nobody unread, it does not run. The
        hub must store to the inbox (a
        :class:`~flask_notifications.consumers.StoreConsumer` registered
        first). Broadcasts are not escalated. See :doc:`/workflows`.

        :param consumer: a :class:`~flask_notifications.consumers.consumer.Consumer`
            or a function taking the event; omitted when used as
            ``@register_consumer(...)``.
        :param celery_task_name: name of the Celery task that runs the consumer,
            given relative to your application (``"app.write_to_file"``) so the
            worker, which imports the application, registers the same name.
            Defaults to the function's or the consumer class's dotted path, with
            ``-2``, ``-3``... appended for further consumers of one class.
        :param if_unread_after: run the consumer this long after the event
            was sent, for its recipients who have not read it (a positive
            :class:`~datetime.timedelta`).
        :returns: what was registered (the function itself for functions), or a
            decorator when ``consumer`` is omitted.
        :raises ValueError: if ``celery_task_name`` is already used on this hub
            by another consumer.
        :raises ConfigurationError: with ``if_unread_after``, if the hub does
            not store to the inbox, the delay is not positive, or the consumer
            is a StoreConsumer.
        """
        if consumer is None:

            def decorator(func: C) -> C:
                return self.register_consumer(
                    func, celery_task_name=celery_task_name, if_unread_after=if_unread_after
                )

            return decorator
        if if_unread_after is not None:
            self._check_escalation(consumer, if_unread_after)
        if self.is_registered(consumer):
            return consumer
        if isinstance(consumer, Consumer):
            wrapped = consumer
        elif callable(consumer):
            wrapped = FunctionConsumer(consumer, celery_task_name)
        else:
            raise TypeError(
                f"register_consumer() takes a Consumer or a function, not {type(consumer).__name__}"
            )
        name = self._task_name(wrapped, celery_task_name)
        ensure_task(name)
        self._consumers[name] = wrapped
        if if_unread_after is not None:
            self._unread_after[name] = if_unread_after
        self._update_names()
        return consumer

    def _check_escalation(self, consumer: Any, after: Any) -> None:
        if not isinstance(after, timedelta):
            raise TypeError(f"if_unread_after must be a timedelta, not {type(after).__name__}")
        if after <= timedelta(0):
            raise ConfigurationError(f"if_unread_after must be positive, not {after}")
        if isinstance(consumer, StoreConsumer):
            raise ConfigurationError("a StoreConsumer cannot be escalated: it is the inbox")
        if not any(isinstance(c, StoreConsumer) for c in self._consumers.values()):
            raise ConfigurationError(
                f"if_unread_after needs a hub that stores to the inbox: register a "
                f"StoreConsumer on hub {self.label!r} before the escalated consumer"
            )

    def _update_names(self) -> None:
        # Read by send() without a lock: replaced whole.
        self._names = tuple(n for n in self._consumers if n not in self._unread_after)
        self._escalating = tuple(
            (n, after.total_seconds()) for n, after in self._unread_after.items()
        )

    @property
    def escalations(self) -> dict[str, timedelta]:
        """The consumers registered with ``if_unread_after``: task name -> delay."""
        return dict(self._unread_after)

    def _task_name(self, consumer: Consumer, explicit: str | None) -> str:
        name = explicit if explicit is not None else consumer.celery_task_name
        if name is not None:
            if not isinstance(name, str) or not name:
                raise ValueError("celery_task_name must be a non-empty string")
            if name in self._consumers:
                raise ValueError(
                    f"celery_task_name {name!r} is already used on hub {self.label!r} "
                    f"by {self._consumers[name]!r}"
                )
            return name
        base = consumer.default_task_name()
        name, n = base, 1
        while name in self._consumers:
            n += 1
            name = f"{base}-{n}"
        return name

    def _name_of(self, consumer: Any) -> str | None:
        if isinstance(consumer, str):
            return consumer if consumer in self._consumers else None
        for name, registered in self._consumers.items():
            if registered is consumer or registered == consumer:
                return name
            if isinstance(registered, FunctionConsumer) and registered.func is consumer:
                return name
        return None

    def is_registered(self, consumer: Consumer | Callable[..., Any] | str) -> bool:
        """Whether ``consumer`` (an instance, a registered function or a task
        name) is registered on this hub. A consumer equal to a registered one
        (same class, same configuration) counts as registered.

        :param consumer: what to look for.
        """
        return self._name_of(consumer) is not None

    def deregister_consumer(self, consumer: Consumer | Callable[..., Any] | str) -> bool:
        """Stop sending events to ``consumer``.

        Events sent afterwards are not enqueued for it, and a worker whose hub
        no longer has it skips tasks already queued.

        :param consumer: a consumer instance, a registered function or a task name.
        :returns: whether it was registered.
        :raises ConfigurationError: for the hub's last StoreConsumer while
            consumers escalate unread events (deregister those first).
        """
        name = self._name_of(consumer)
        if name is None:
            return False
        removed = self._consumers[name]
        stores = [c for c in self._consumers.values() if isinstance(c, StoreConsumer)]
        if self._unread_after and stores == [removed]:
            raise ConfigurationError(
                f"hub {self.label!r} escalates unread events to "
                f"{', '.join(self._unread_after)}: deregister those before its StoreConsumer"
            )
        del self._consumers[name]
        self._unread_after.pop(name, None)
        self._update_names()
        return True

    def get_consumer(self, celery_task_name: str) -> Consumer | None:
        """Return the consumer run by the task ``celery_task_name``, if any.

        :param celery_task_name: a task name of this hub.
        """
        return self._consumers.get(celery_task_name)

    @property
    def consumers(self) -> dict[str, Consumer]:
        """A copy of the registered consumers, by task name, in registration order."""
        return dict(self._consumers)

    @property
    def registered_consumers(self) -> tuple[Consumer | Callable[..., Any], ...]:
        """What was registered, in registration order, as 0.1 listed it: each
        function as given (not its wrapper) and each
        :class:`~flask_notifications.consumers.consumer.Consumer` instance.
        :meth:`is_registered` is true for each, and :meth:`deregister_consumer`
        takes each. See :attr:`consumers` for the task names."""
        return tuple(
            c.func if isinstance(c, FunctionConsumer) else c for c in self._consumers.values()
        )

    def __repr__(self) -> str:
        return f"<EventHub {self.label!r} id={self.hub_id} filter={self.filter!r}>"


def register_consumer(
    hub: EventHub | str,
    consumer: Any = None,
    *,
    celery_task_name: str | None = None,
    if_unread_after: timedelta | None = None,
) -> Any:
    """Module-level form of :meth:`EventHub.register_consumer`::

        @register_consumer(hub, celery_task_name="app.write_to_file")
        def write_to_file(event, *args, **kwargs): ...

    :param hub: an :class:`EventHub`, or a hub label (then resolved, or
        created, through :data:`current_notifications`, so inside an
        application context).
    :param consumer: as in :meth:`EventHub.register_consumer`.
    :param celery_task_name: as in :meth:`EventHub.register_consumer`.
    :param if_unread_after: as in :meth:`EventHub.register_consumer`.
    """
    if isinstance(hub, str):
        hub = current_notifications.create_hub(hub)
    if not isinstance(hub, EventHub):
        raise TypeError(
            f"register_consumer() takes an EventHub or a label, not {type(hub).__name__}"
        )
    return hub.register_consumer(
        consumer, celery_task_name=celery_task_name, if_unread_after=if_unread_after
    )


def _get_current_notifications() -> Notifications:
    return get_state().extension


#: Root of the notification extension: the :class:`~flask_notifications.Notifications`
#: object of the current application. Also available in Jinja templates.
current_notifications: Notifications = LocalProxy(_get_current_notifications)  # type: ignore[assignment]
