"""The :class:`StoreConsumer`: keeps events in the inbox."""

from __future__ import annotations

from typing import Any

from flask import current_app

from .._state import get_state
from ..delivery import log as delivery_log
from ..event import Event
from ._recipients import allowed_recipients
from .consumer import Consumer


class StoreConsumer(Consumer):
    """Stores each event in the inbox, one row per recipient (one bulk insert),
    skipping users whose preferences refuse it on the ``inbox`` channel
    (channel, category or event type; unless ``NOTIFICATIONS_PREFERENCES`` is
    ``False``).
    Broadcast events (no recipients) are not stored.

    The hubs a StoreConsumer is registered on also carry the ``unread_count``
    events that keep badges up to date.
    """

    #: The preferences channel this consumer honours.
    channel = "inbox"

    def consume(self, event: Event, *args: Any, **kwargs: Any) -> int:
        if not event["recipients"]:
            delivery_log.record(
                event["event_id"], delivery_log.BROADCAST, self.channel, "suppressed",
                "broadcast events are not stored",
            )  # fmt: skip
            return 0
        extension = get_state().extension
        recipients: list[str] | list[str | int] = event["recipients"]
        if current_app.config["NOTIFICATIONS_PREFERENCES"] is not False:
            recipients = allowed_recipients(event, self.channel, force=True)
        return extension.inbox.store(event, recipients)
