"""The :class:`WithRecipients` filter."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..event_filter import EventFilter
from ._ids import normalise_id


class WithRecipients(EventFilter):
    """Passes events whose set of recipients equals ``recipients``.

    Order and repetition do not matter. To test membership of one user, use
    :class:`~flask_notifications.filters.IncludesRecipient`.

    :param recipients: user ids (integers match their string form).
    """

    def __init__(self, recipients: Iterable[str | int]) -> None:
        if isinstance(recipients, str | bytes):
            raise TypeError("WithRecipients() takes a collection of user ids, not a string")
        self.recipients = frozenset(normalise_id(r) for r in recipients)

    def filter(self, event: Mapping[str, Any], *args: Any, **kwargs: Any) -> bool:
        return frozenset(event.get("recipients") or ()) == self.recipients

    def __repr__(self) -> str:
        return f"WithRecipients({sorted(self.recipients)!r})"
