"""An event's ``i18n`` field: message ids and parameters, checked at send time.

.. code-block:: python

    Event(None, "comment", title="", body="", recipients=[post.author_id],
          i18n={"title": "New comment",
                "body": "%(author)s commented on “%(post)s”",
                "params": {"author": "Ann", "post": "Hello"}})

``title`` and ``body`` (both optional, at least one) are gettext message ids;
``params`` fills their ``%(name)s`` placeholders, as Flask-Babel's
``gettext(msgid, **params)`` does. The parser is Python's own ``%``
operator: a msgid is valid when ``msgid % params`` formats, and every
placeholder is named (a literal percent sign is written ``%%``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidMessageError

#: The custom field of an event that carries its message ids and parameters.
I18N_FIELD = "i18n"
#: The event fields an ``i18n`` message id may stand for.
TEXT_FIELDS = ("title", "body")
_KEYS = frozenset((*TEXT_FIELDS, "params"))
# A %-conversion: %(name)flags width .precision type, or %% (a literal percent).
_CONVERSION = re.compile(
    r"%(?:\((?P<name>[^)]*)\))?[#0 +\-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?(?P<type>[diouxXeEfFgGcrsa%])?"
)
_MAX_PARAMS = 50


def message_of(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The event's ``i18n`` field as checked by :func:`check_message`, or
    ``None`` when it has none.

    :param event: the event.
    """
    value = event.get(I18N_FIELD)
    return value if isinstance(value, dict) else None


def check_message(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """Check the event's ``i18n`` field, if it has one.

    :param event: the event.
    :returns: the field, or ``None`` when the event has none.
    :raises InvalidMessageError: naming what is wrong: not an object, an
        unknown key, no message id, a message id that is not a non-empty
        string, parameters that are not an object of JSON scalars (string,
        number, boolean, null), a placeholder the parameters lack, a
        positional placeholder, or a conversion the value does not fit.
    """
    if I18N_FIELD not in event:
        return None
    value = event[I18N_FIELD]
    if not isinstance(value, dict):
        raise InvalidMessageError(f"must be an object, not {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in _KEYS)
    if unknown:
        raise InvalidMessageError(
            f"unknown key(s) {', '.join(map(repr, unknown))}: use 'title', 'body' and 'params'"
        )
    if not any(field in value for field in TEXT_FIELDS):
        raise InvalidMessageError("needs a message id: 'title', 'body' or both")
    params = value.get("params", {})
    _check_params(params)
    for field in TEXT_FIELDS:
        if field in value:
            _check_msgid(field, value[field], params)
    return value


def _check_params(params: Any) -> None:
    if not isinstance(params, dict):
        raise InvalidMessageError(f"params must be an object, not {type(params).__name__}")
    if len(params) > _MAX_PARAMS:
        raise InvalidMessageError(f"params: at most {_MAX_PARAMS} parameters")
    for name, item in params.items():
        if not isinstance(name, str) or not name:
            raise InvalidMessageError(f"params: names must be non-empty strings, not {name!r}")
        if item is None or isinstance(item, str | bool | int):
            continue
        if isinstance(item, float) and math.isfinite(item):
            continue
        raise InvalidMessageError(
            f"params[{name!r}] must be a string, a number, a boolean or null "
            f"(JSON scalars), not {type(item).__name__}"
        )


def _check_msgid(field: str, msgid: Any, params: dict[str, Any]) -> None:
    if not isinstance(msgid, str) or not msgid.strip():
        raise InvalidMessageError(f"{field} must be a non-empty message id string")
    for match in _CONVERSION.finditer(msgid):
        name, kind = match.group("name"), match.group("type")
        if kind == "%" and name is None:
            continue  # %%
        if name is None:
            raise InvalidMessageError(
                f"{field} {msgid[:80]!r}: placeholder {match.group(0)!r} has no name; "
                "write %(name)s (and a literal percent sign as %%)"
            )
        if name not in params:
            known = ", ".join(sorted(params)) or "none"
            raise InvalidMessageError(
                f"{field} {msgid[:80]!r}: unknown placeholder %({name})s (params given: {known})"
            )
    try:
        msgid % params
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidMessageError(f"{field} {msgid[:80]!r} does not format: {exc}") from None


def format_message(text: str, params: Mapping[str, Any]) -> str:
    """``text % params``, as gettext formats a message.

    :param text: a message (a msgid or its translation).
    :param params: the parameters.
    :raises TypeError, ValueError, KeyError: when ``text`` does not fit them.
    """
    return text % dict(params)
