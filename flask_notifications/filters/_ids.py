"""Shared normalisation of user ids for the recipient and sender filters."""

from __future__ import annotations


def normalise_id(value: object) -> str:
    """Return ``value`` as the string form :class:`~flask_notifications.event.Event` stores.

    :param value: a user id, a string or an integer.
    :raises TypeError: for any other type.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"a user id must be a string or an integer, not {type(value).__name__}")
    return str(value)
