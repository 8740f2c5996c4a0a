"""What the native push consumers (:class:`FCMConsumer` and :class:`APNsConsumer`)
share: their channel, delivery records, task and retries, and the options
``broadcast``, ``timeout`` and ``celery_task_name``."""

from __future__ import annotations

from ..errors import PushServiceUnavailable
from .consumer import Consumer


class _MobilePushConsumer(Consumer):
    """The base of the native push consumers."""

    #: The preferences (and per-event ``channels``) name of this consumer.
    channel = "mobile"
    #: Each delivery is recorded; a recipient without a device is ``suppressed``.
    delivery_status = "suppressed"
    #: A task of its own: a push service must delay no other consumer.
    own_task = True
    retry_for: tuple[type[BaseException], ...] = (*Consumer.retry_for, PushServiceUnavailable)

    def __init__(self, *, broadcast: bool, timeout: float, celery_task_name: str | None) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0, not {timeout!r}")
        self.broadcast = bool(broadcast)
        self.timeout = float(timeout)
        self.celery_task_name = celery_task_name
