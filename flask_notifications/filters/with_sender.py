"""The :class:`WithSender` filter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..event_filter import EventFilter
from ._ids import normalise_id


class WithSender(EventFilter):
    """Passes events sent by ``sender``.

    :param sender: a sender id (integers match their string form).
    """

    def __init__(self, sender: str | int) -> None:
        self.sender = normalise_id(sender)

    def filter(self, event: Mapping[str, Any], *args: Any, **kwargs: Any) -> bool:
        return event.get("sender") == self.sender
