"""The recipient's language: notification texts rendered in each user's locale.

See :doc:`/i18n`. The e-mail and Web Push consumers use it like this::

    for locale, recipients in by_locale(recipients, user_of):
        with in_locale(locale):
            text = localize(event)   # title and body in that locale
            ...                      # render and send to each recipient

An event's texts are translated from its ``i18n`` field (see
:func:`check_message`); the e-mail templates translate their own strings
with :func:`gettext` and :func:`ngettext`.
"""

from __future__ import annotations

import logging

from ..event import Event
from ._locales import (
    FALLBACK_LOCALE,
    PACKAGE_DOMAIN,
    TRANSLATIONS_DIR,
    babel_on,
    by_locale,
    default_locale,
    gettext,
    in_locale,
    locales_for,
    lookup,
    ngettext,
    parse_locale,
)
from ._messages import I18N_FIELD, TEXT_FIELDS, check_message, format_message, message_of

logger = logging.getLogger("flask_notifications")


def localize(event: Event) -> Event:
    """``event`` with its ``title`` and ``body`` in the current locale (see
    :func:`in_locale`), from its ``i18n`` message ids; the event itself when
    it has none.

    For each message id: its translation (the app's catalog, then the
    package's) formatted with the parameters. With no translation for this
    locale, the event's own text (the fallback given to ``send``), or the
    msgid formatted when that text is empty.

    :param event: the event (left unchanged).
    """
    message = message_of(event)
    if message is None:
        return event
    params = message.get("params") or {}
    local = Event.__new__(type(event))
    dict.update(local, event)
    for field in TEXT_FIELDS:
        msgid = message.get(field)
        if not isinstance(msgid, str):
            continue
        text, found = lookup(msgid)
        if not found and event.get(field):
            continue
        local[field] = _formatted(text, msgid, params, event.get(field))
    return local


def localized_for(event: Event, users: list[str]) -> dict[str, Event]:
    """``event`` in the locale of each user (:func:`localize` once per
    locale), for consumers that send per device (the mobile push consumers).

    :param event: the event.
    :param users: user ids.
    :returns: user id -> the event in that user's locale.
    """
    if message_of(event) is None:
        return dict.fromkeys(users, event)
    result: dict[str, Event] = {}
    for locale, group in by_locale(dict.fromkeys(users), lambda user: user).items():
        with in_locale(locale):
            local = localize(event)
        result.update(dict.fromkeys(group, local))
    return result


def _formatted(text: str, msgid: str, params: dict, fallback: object) -> str:
    for candidate in (text, msgid):
        try:
            return format_message(candidate, params)
        except (TypeError, ValueError, KeyError) as exc:
            logger.warning("message %r does not format (%s)", candidate[:80], exc)
    return fallback if isinstance(fallback, str) else msgid


def prepare(event: Event) -> None:
    """Check the event's ``i18n`` field and fill an empty ``title`` or
    ``body`` with its message in the default locale, so the inbox, the
    streams and every consumer that does not translate show a text (run by
    :meth:`Notifications.send <flask_notifications.Notifications.send>`).

    :param event: the event, changed in place.
    :raises InvalidMessageError: for a malformed ``i18n`` field.
    """
    message = check_message(event)
    if message is None or all(event.get(f) for f in TEXT_FIELDS if f in message):
        return
    with in_locale(default_locale()):
        local = localize(event)
    for field in TEXT_FIELDS:
        if not event.get(field):
            event[field] = local[field]


__all__ = [
    "FALLBACK_LOCALE",
    "I18N_FIELD",
    "PACKAGE_DOMAIN",
    "TRANSLATIONS_DIR",
    "babel_on",
    "by_locale",
    "check_message",
    "default_locale",
    "gettext",
    "in_locale",
    "localize",
    "localized_for",
    "locales_for",
    "ngettext",
    "parse_locale",
    "prepare",
]
