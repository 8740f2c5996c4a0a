"""One event's pushes to native devices, as the mobile push consumers (FCM
and APNs) keep count of them: the devices left to send to (a retried task
skips those already served), each answer's record, and the outcome."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from flask import current_app

from .. import reliability
from ..delivery import log as delivery_log
from ..errors import PushRejected, PushServiceUnavailable

if TYPE_CHECKING:
    from ..event import Event
    from ..mobile.store import Device
    from .consumer import Consumer


class _DeviceBatch:
    """The pushes of ``event`` by ``consumer`` to ``targets`` (devices by
    their key in the delivery records).

    :param consumer: the consumer sending them.
    :param event: the event.
    :param targets: the devices by key.
    :param what: how the error messages name the pushes (``"FCM message(s)"``).
    """

    def __init__(
        self, consumer: Consumer, event: Event, targets: Mapping[str, Device], what: str
    ) -> None:
        self.task_name = consumer.task_name()
        self.event_id = event["event_id"]
        self.channel = consumer.channel
        self.ttl = current_app.config["NOTIFICATIONS_DEDUP_TTL"]
        self.total = len(targets)
        self.what = what
        done = reliability.delivered(self.task_name, self.event_id, list(targets))
        #: ``(key, device)`` of the devices not served yet.
        self.todo = [(k, d) for k, d in targets.items() if k not in done]
        self.sent = 0
        self._transient: list[tuple[str, float | None]] = []
        self._rejected: list[str] = []

    def done(self, key: str) -> None:
        """The device of ``key`` is served (not to be sent again when retried)."""
        reliability.mark_delivered(self.task_name, self.event_id, key, self.ttl)

    def delivered(self, key: str, device: Device) -> None:
        """The push service accepted the push to ``device``."""
        self.sent += 1
        delivery_log.record(self.event_id, device.recipient, self.channel, "delivered")
        self.done(key)

    def refused(self, key: str, reason: str) -> None:
        """The push service refused it for good (a dead letter naming ``reason``)."""
        self._rejected.append(reason)
        self.done(key)

    def retry(self, reason: str, wait: float | None = None) -> None:
        """It is to be sent again with the task, no sooner than ``wait`` seconds."""
        self._transient.append((reason, wait))

    def finish(self) -> int:
        """How many were accepted.

        :raises PushServiceUnavailable: when some should be retried.
        :raises PushRejected: when one was refused for good.
        """
        transient, rejected = self._transient, self._rejected
        if transient:
            waits = [w for _, w in transient if w is not None]
            exc = PushServiceUnavailable(
                f"{len(transient)} of {self.total} {self.what} of event {self.event_id} "
                f"failed and will be retried; first: {transient[0][0]}"
            )
            exc.retry_after = max(waits) if waits else None
            raise exc
        if rejected:
            raise PushRejected(
                f"{len(rejected)} of {self.total} {self.what} of event {self.event_id} "
                f"were refused: {rejected[0]}"
            )
        return self.sent
