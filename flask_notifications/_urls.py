"""The one rule for links taken from events (``url``, ``client_action``)
that e-mails and Web Push notifications open."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def safe_link(value: Any) -> str | None:
    """``value`` when it is a link safe to put in an ``href`` or open from a
    notification: an absolute ``http``/``https`` URL with a host, or a path on
    the site (``/inbox``); else ``None``.

    Refused: other schemes (``javascript:``, ``data:``), protocol-relative
    links (``//evil.example``), backslashes (browsers read ``/\\evil.example``
    as ``//evil.example``), whitespace and control characters.

    :param value: the event's field.
    """
    if not isinstance(value, str) or not value or len(value) > 2048:
        return None
    if "\\" in value or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        return None
    if value.startswith("/"):
        return None if value.startswith("//") else value
    if value.lower().startswith(("https://", "http://")):
        try:
            host = urlsplit(value).hostname
        except ValueError:  # e.g. a malformed IPv6 literal
            return None
        return value if host else None
    return None
