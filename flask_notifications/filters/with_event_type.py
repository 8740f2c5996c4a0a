"""The :class:`WithEventType` filter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..event_filter import EventFilter


class WithEventType(EventFilter):
    """Passes events whose ``event_type`` is one of the given types.

    :param event_types: one or more event types, e.g. ``WithEventType("test")``.
    """

    def __init__(self, *event_types: str) -> None:
        if not event_types or not all(isinstance(t, str) for t in event_types):
            raise TypeError("WithEventType() takes one or more event type strings")
        self.event_types = frozenset(event_types)

    def filter(self, event: Mapping[str, Any], *args: Any, **kwargs: Any) -> bool:
        return event.get("event_type") in self.event_types

    def __repr__(self) -> str:
        return f"WithEventType({', '.join(repr(t) for t in sorted(self.event_types))})"
