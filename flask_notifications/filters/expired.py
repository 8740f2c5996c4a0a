"""The :class:`Expired` filter."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ..event_filter import EventFilter


class Expired(EventFilter):
    """Passes events whose ``expiration_datetime`` has passed when the filter runs.

    ``~Expired()`` keeps only live events (expired events are never consumed
    anyway; this filter is for hubs that should not even enqueue them).
    """

    def filter(self, event: Mapping[str, Any], *args: Any, **kwargs: Any) -> bool:
        expiration = event.get("expiration_datetime")
        return expiration is not None and expiration.timestamp() <= time.time()

    def __repr__(self) -> str:
        return "Expired()"
