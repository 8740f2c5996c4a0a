"""Shared conversion of the date filters' argument."""

from __future__ import annotations

from datetime import datetime


def to_epoch(value: datetime | float, name: str) -> float:
    """Return ``value`` as epoch seconds; a naive datetime is local time.

    :param value: a :class:`~datetime.datetime` or epoch seconds.
    :param name: the filter's name, for the error message.
    :raises TypeError: for any other type.
    """
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name}() takes a datetime or epoch seconds, not {type(value).__name__}")
    return float(value)
