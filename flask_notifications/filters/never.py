"""The :class:`Never` filter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..event_filter import EventFilter


class Never(EventFilter):
    """No event passes (handy to pause a hub without deregistering consumers)."""

    def filter(self, event: Mapping[str, Any], *args: Any, **kwargs: Any) -> bool:
        return False
