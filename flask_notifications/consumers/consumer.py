"""The :class:`Consumer` interface and the wrapper for decorated functions."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from celery import current_task
from redis import exceptions as redis_exceptions

from ..delivery.tasks import ConsumerTask, running_consumer
from ..event import Event

EventLike = Event | Mapping[str, Any] | str | bytes


class Consumer:
    """Something that does work with an event: push it, log it, mail it.

    Registered on an :class:`~flask_notifications.event_hub.EventHub`, a
    consumer runs in a Celery worker, inside an application context, once per
    event that passes the hub's filter. Subclasses implement :meth:`consume`
    and may override the two hooks.

    :attr:`celery_task_name` names the Celery task that runs the consumer; it
    must be the same in the web process and in the worker. When ``None``, the
    hub uses the class's dotted path.

    :meth:`consume` receives an :class:`~flask_notifications.event.Event`.
    As in 0.1, it may also be called directly with the event's JSON form (or
    a mapping of its fields): every subclass's ``consume`` converts its first
    argument with :meth:`Event.coerce <flask_notifications.event.Event.coerce>`.

    Two consumers are equal when they are of the same class and have the same
    configuration (their public attributes, see :meth:`configuration`):
    registering a consumer equal to one already on a hub does nothing.
    """

    #: Name of the Celery task that runs this consumer, or ``None`` for the default.
    celery_task_name: str | None = None

    #: Whether the consumer runs as a Celery task of its own. ``False`` (the
    #: default): a worker runs it with the event's other consumers in one task
    #: (one broker message per event), guarded by its own completion record.
    #: ``True``: the worker enqueues a task for it alone, so it never delays
    #: the others: set it on consumers that wait on the outside world (the
    #: e-mail and Web Push consumers do) or that can be slow.
    own_task: bool = False

    #: The channel the consumer delivers on: the opt-outs it honours and the
    #: name an event's ``channels`` field lists to get it (``"inbox"``,
    #: ``"stream"``, ``"email"``, ``"webpush"``, ``"mobile"``). ``None`` (the
    #: default): none; the consumer gets every event.
    channel: str | None = None

    #: The delivery log's status of the event's recipients (``"*"`` for a
    #: broadcast) on :attr:`channel` after a run that ended well, for those
    #: the run did not record itself (see :mod:`flask_notifications.delivery.log`):
    #: ``"delivered"`` (the default), ``"sent"`` (no receipt: the live stream),
    #: ``"suppressed"`` (consumers that record each delivery: whoever they
    #: did not reach had no address, subscription or device), or ``None``
    #: (only what the run recorded).
    delivery_status: str | None = "delivered"

    #: Exceptions worth retrying (transient: the network, a server busy).
    #: Anything else fails the task at once and leaves a dead letter.
    retry_for: tuple[type[BaseException], ...] = (
        ConnectionError,
        TimeoutError,
        redis_exceptions.ConnectionError,  # redis's are not builtin ConnectionErrors
        redis_exceptions.TimeoutError,
    )
    #: Retries before giving up (then: a dead letter and ``consumer_failed``).
    max_retries: int = 5
    #: Backoff factor in seconds: retry n waits up to ``retry_backoff * 2**n``.
    retry_backoff: int = 2
    #: Longest wait between two retries, in seconds.
    retry_backoff_max: int = 600
    #: Full jitter: wait a random time up to the backoff, so retries spread out.
    retry_jitter: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        consume = cls.__dict__.get("consume")
        if inspect.isfunction(consume) and not getattr(consume, "_coerces", False):
            cls.consume = _coercing(consume)  # type: ignore[method-assign]

    def __call__(self, event: EventLike, *args: Any, **kwargs: Any) -> Any:
        """Run :meth:`before_consume`, :meth:`consume` and :meth:`after_consume`.

        :param event: an :class:`~flask_notifications.event.Event`, its JSON form
            or a mapping of its fields.
        :returns: what :meth:`consume` returned.
        """
        event = Event.coerce(event)
        if not self.wants(event):
            return None
        self.before_consume(event, *args, **kwargs)
        result = self.consume(event, *args, **kwargs)
        self.after_consume(event, *args, **kwargs)
        return result

    def wants(self, event: Event) -> bool:
        """Whether the event is for this consumer's :attr:`channel`: an event
        whose ``channels`` field lists channels (``["inbox", "mobile"]``; one
        string is a list of one) goes only to the consumers of those
        channels; without the field (or with another type), and for a
        consumer without a channel, every event is.

        :param event: the event.
        """
        channels = event.get("channels")
        if self.channel is None or channels is None:
            return True
        if isinstance(channels, str):
            return channels == self.channel
        if isinstance(channels, list | tuple) and all(isinstance(c, str) for c in channels):
            return self.channel in channels
        return True

    def before_consume(self, event: Event, *args: Any, **kwargs: Any) -> None:
        """Hook run before :meth:`consume`; raising here skips the event.

        :param event: the event about to be consumed.
        """

    def consume(self, event: Event, *args: Any, **kwargs: Any) -> Any:
        """Do the consumer's work with ``event``.

        :param event: the event to consume.
        """
        raise NotImplementedError

    def after_consume(self, event: Event, *args: Any, **kwargs: Any) -> None:
        """Hook run after :meth:`consume` returned (for example, to record that
        the event was stored).

        :param event: the event just consumed.
        """

    def task_name(self) -> str:
        """The name this consumer runs under: the running consumer task's (a
        hub may register the consumer under another name than its
        :attr:`celery_task_name`), else :attr:`celery_task_name` or
        :meth:`default_task_name`. Consumers key their delivery records by it."""
        running = running_consumer()
        if running is not None:
            return running
        task = current_task._get_current_object() if current_task else None
        if isinstance(task, ConsumerTask):
            return task.name  # type: ignore[no-any-return]
        return self.celery_task_name or self.default_task_name()

    def default_task_name(self) -> str:
        """The task name used when none was given: the class's dotted path."""
        cls = type(self)
        return f"{cls.__module__}.{cls.__qualname__}"

    def configuration(self) -> dict[str, Any]:
        """What tells two consumers of one class apart: the public instance
        attributes (those not starting with ``_``, which hold caches). Override
        it when a consumer's configuration lives elsewhere."""
        return {k: v for k, v in getattr(self, "__dict__", {}).items() if not k.startswith("_")}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self is other or self.configuration() == other.configuration()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        # Equal consumers share a class; the configuration may be mutable.
        return hash(type(self))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.celery_task_name or self.default_task_name()}>"


def _coercing(consume: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a subclass's ``consume`` so that it also takes the event's JSON
    form or a mapping, as in 0.1 (``consumer.consume(event_json)``)."""

    @functools.wraps(consume)
    def wrapper(self: Consumer, event: EventLike, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(event, Event):
            event = Event.coerce(event)
        return consume(self, event, *args, **kwargs)

    wrapper._coerces = True  # type: ignore[attr-defined]
    return wrapper


class FunctionConsumer(Consumer):
    """A plain function registered with
    :meth:`EventHub.register_consumer <flask_notifications.event_hub.EventHub.register_consumer>`.

    :param func: called as ``func(event, *args, **kwargs)``.
    :param celery_task_name: task name; defaults to the function's dotted path.
    """

    def __init__(self, func: Callable[..., Any], celery_task_name: str | None = None) -> None:
        if not callable(func):
            raise TypeError(f"a consumer must be callable, not {type(func).__name__}")
        self.func = func
        self.celery_task_name = celery_task_name

    def consume(self, event: Event, *args: Any, **kwargs: Any) -> Any:
        return self.func(event, *args, **kwargs)

    def default_task_name(self) -> str:
        """The task name used when none was given: the function's dotted path."""
        return f"{self.func.__module__}.{self.func.__qualname__}"
