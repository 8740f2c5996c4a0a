"""The :class:`Consumer` interface and the wrapper for decorated functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

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
