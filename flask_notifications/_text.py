"""The one rule for outside text (push services' answers, SMTP replies,
exception messages) written to logs, dead letters and the terminal."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")


def printable(text: object, limit: int | None = 500) -> str:
    """``str(text)`` with control characters (CR, LF, ESC, bidi overrides...)
    replaced by one space each run, cut to ``limit`` characters.

    A line read from a log or a terminal then shows what was said, never
    forged lines or escape sequences.

    :param text: anything; converted with :func:`str`.
    :param limit: the most characters kept (an ellipsis marks a cut);
        ``None`` keeps them all.
    """
    cleaned = _CONTROL.sub(" ", str(text))
    if limit is None or len(cleaned) <= limit:
        return cleaned
    return cleaned[: limit - 1] + "…"
