"""The one rule for the text of a message, a post or a comment."""

from __future__ import annotations

from config import MAX_MESSAGE
from flask import request

__all__ = ["form_text"]


def form_text(name: str) -> tuple[str, bool]:
    """The posted form field ``name``, stripped, and whether it has 1 to
    ``MAX_MESSAGE`` characters.

    :param name: the field's name.
    """
    text = request.form.get(name, "").strip()
    return text, 0 < len(text) <= MAX_MESSAGE
