"""The :class:`IncludesRecipient` filter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..event_filter import EventFilter
from ._ids import normalise_id


class IncludesRecipient(EventFilter):
    """Passes events whose recipients include ``recipient``.

    :param recipient: a user id (integers match their string form).
    """

    def __init__(self, recipient: str | int) -> None:
        self.recipient = normalise_id(recipient)

    def filter(self, event: Mapping[str, Any], *args: Any, **kwargs: Any) -> bool:
        return self.recipient in (event.get("recipients") or ())
