"""The :class:`Consumer` interface and the wrapper for decorated functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from celery import current_task
from redis import exceptions as redis_exceptions

from .._tasks import ConsumerTask
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
    """

    #: Name of the Celery task that runs this consumer, or ``None`` for the default.
    celery_task_name: str | None = None

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

    def __call__(self, event: EventLike, *args: Any, **kwargs: Any) -> Any:
        """Run :meth:`before_consume`, :meth:`consume` and :meth:`after_consume`.

        :param event: an :class:`~flask_notifications.event.Event`, its JSON form
            or a mapping of its fields.
        :returns: what :meth:`consume` returned.
        """
        event = Event.coerce(event)
        self.before_consume(event, *args, **kwargs)
        result = self.consume(event, *args, **kwargs)
        self.after_consume(event, *args, **kwargs)
        return result

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
        task = current_task._get_current_object() if current_task else None
        if isinstance(task, ConsumerTask):
            return task.name  # type: ignore[no-any-return]
        return self.celery_task_name or self.default_task_name()

    def default_task_name(self) -> str:
        """The task name used when none was given: the class's dotted path."""
        cls = type(self)
        return f"{cls.__module__}.{cls.__qualname__}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.celery_task_name or self.default_task_name()}>"


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
