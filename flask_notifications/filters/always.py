"""The :class:`Always` filter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..event_filter import EventFilter


class Always(EventFilter):
    """Every event passes. A new hub filters with this until
    :meth:`~flask_notifications.event_hub.EventHub.filter_by` is called."""

    def filter(self, event: Mapping[str, Any], *args: Any, **kwargs: Any) -> bool:
        return True
