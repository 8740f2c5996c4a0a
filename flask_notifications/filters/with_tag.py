"""The :class:`WithTag` filter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..event_filter import EventFilter


class WithTag(EventFilter):
    """Passes events tagged with ``tag``.

    :param tag: the tag to look for in the event's ``tags``.
    """

    def __init__(self, tag: str) -> None:
        if not isinstance(tag, str):
            raise TypeError(f"WithTag() takes a string, not {type(tag).__name__}")
        self.tag = tag

    def filter(self, event: Mapping[str, Any], *args: Any, **kwargs: Any) -> bool:
        return self.tag in (event.get("tags") or ())
