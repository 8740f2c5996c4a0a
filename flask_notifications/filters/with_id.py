"""The :class:`WithId` filter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..event_filter import EventFilter
from ._ids import normalise_id


class WithId(EventFilter):
    """Passes the event whose ``event_id`` is ``event_id``.

    :param event_id: the event id (an integer matches its string form).
    """

    def __init__(self, event_id: str | int) -> None:
        self.event_id = normalise_id(event_id)

    def filter(self, event: Mapping[str, Any], *args: Any, **kwargs: Any) -> bool:
        return event.get("event_id") == self.event_id
