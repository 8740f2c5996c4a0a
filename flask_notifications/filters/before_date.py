"""The :class:`BeforeDate` filter."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..event_filter import EventFilter
from ._dates import to_epoch


class BeforeDate(EventFilter):
    """Passes events whose ``timestamp`` is strictly before ``date``.

    :param date: a datetime (naive means local time, like ``datetime.now()``)
        or epoch seconds.
    """

    def __init__(self, date: datetime | float) -> None:
        self.date = date
        self._epoch = to_epoch(date, "BeforeDate")

    def filter(self, event: Mapping[str, Any], *args: Any, **kwargs: Any) -> bool:
        return event["timestamp"] < self._epoch

    def __repr__(self) -> str:
        return f"BeforeDate({self.date!r})"
