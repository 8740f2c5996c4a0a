"""Locales: the recipient's (through the ``locale_resolver``), the default one,
translation with Flask-Babel, and rendering in a forced locale.

Translation looks a message up in the app's Flask-Babel catalog first, then in
the package's own (domain ``flask_notifications``, shipped in
``flask_notifications/translations``): an app overrides a string of the
package's templates by translating the same msgid in its catalog.

Without Flask-Babel on the app (``pip install 'Flask-Notifications[i18n]'``
and ``Babel(app)``), nothing is translated: messages come out as their msgid
(formatted with the parameters) and the ``locale_resolver`` is not called.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from flask import Flask, current_app, g

from .._state import has_state
from .._text import printable

logger = logging.getLogger("flask_notifications")

#: The gettext domain of the package's own catalogs.
PACKAGE_DOMAIN = "flask_notifications"
#: Where the package's catalogs are: ``<locale>/LC_MESSAGES/flask_notifications.mo``.
TRANSLATIONS_DIR = Path(__file__).resolve().parent.parent / "translations"
#: The locale of an app without Flask-Babel or ``NOTIFICATIONS_DEFAULT_LOCALE``.
FALLBACK_LOCALE = "en"

T = TypeVar("T")


@dataclass(eq=False)
class _AppI18n:
    """Per-app: the package's Flask-Babel domain (it caches the loaded
    catalogs) and whether the missing-Babel warning was given."""

    domain: Any
    warned: bool = False


def babel_on(app: Flask | None = None) -> bool:
    """Whether Flask-Babel is initialised on ``app`` (default: the current app).

    :param app: the Flask app.
    """
    app = app or current_app
    return "babel" in app.extensions


def parse_locale(value: Any) -> str | None:
    """``value`` as a normalised locale name (``"fr"``, ``"pt_BR"``), or ``None``
    when it is not one Babel knows.

    :param value: a string such as ``"fr"``, ``"fr-CA"``, ``"pt_BR"``, or a
        :class:`babel.Locale`.
    """
    from babel import Locale, UnknownLocaleError

    if isinstance(value, Locale):
        return str(value)
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        return None
    try:
        return str(Locale.parse(value.strip().replace("-", "_")))
    except (ValueError, TypeError, UnknownLocaleError):
        return None


def default_locale() -> str:
    """The locale of recipients without one: ``NOTIFICATIONS_DEFAULT_LOCALE``,
    else Flask-Babel's default locale (``BABEL_DEFAULT_LOCALE``), else ``"en"``."""
    configured = current_app.config.get("NOTIFICATIONS_DEFAULT_LOCALE")
    if configured:
        return str(configured)
    if babel_on():
        return str(current_app.extensions["babel"].default_locale)
    return FALLBACK_LOCALE


def _app_i18n() -> _AppI18n | None:
    if not has_state():
        return None
    from .._state import get_state

    state = get_state()
    if state.i18n is None:
        with state.lock:
            if state.i18n is None:
                state.i18n = _AppI18n(_package_domain())
    return state.i18n  # type: ignore[no-any-return]


def _package_domain() -> Any:
    from flask_babel import Domain

    return Domain(translation_directories=[str(TRANSLATIONS_DIR)], domain=PACKAGE_DOMAIN)


def locales_for(users: Iterable[str | None]) -> dict[str | None, str]:
    """The locale of each user, through ``@notifications.locale_resolver``.

    ``None`` (a fixed address, no user), a user the resolver gives ``None``
    for, a resolver that raises or answers something that is not a locale:
    the default locale (the last two are logged as warnings; the delivery
    goes on).

    :param users: user ids (strings), or ``None``.
    """
    default = default_locale()
    users = list(dict.fromkeys(users))
    extension = current_app.extensions.get("notifications")
    resolver = getattr(extension, "_locale_resolver", None)
    if resolver is None or not babel_on():
        if resolver is not None:
            _warn_no_babel()
        return dict.fromkeys(users, default)
    result: dict[str | None, str] = {}
    parsed: dict[Any, str | None] = {}  # few distinct answers: parse each once
    for user in users:
        result[user] = default if user is None else _resolve(extension, user, default, parsed)
    return result


def _resolve(extension: Any, user: str, default: str, parsed: dict[Any, str | None]) -> str:
    try:
        value = extension.resolve_locale(user)
    except Exception:  # noqa: BLE001 - a resolver bug must not lose the delivery
        logger.warning(
            "locale_resolver failed for user %s; the default locale %s is used",
            printable(user, 80), default, exc_info=True,
        )  # fmt: skip
        return default
    if value is None:
        return default
    try:
        locale = parsed[value]
    except (KeyError, TypeError):  # TypeError: an unhashable answer
        locale = parse_locale(value)
        if isinstance(value, str):
            parsed[value] = locale
    if locale is None:
        logger.warning(
            "locale_resolver gave %s for user %s, not a locale; the default locale %s is used",
            printable(repr(value), 80), printable(user, 80), default,
        )  # fmt: skip
        return default
    return locale


def _warn_no_babel() -> None:
    app_i18n = _app_i18n() if _babel_importable() else None
    if app_i18n is not None and app_i18n.warned:
        return
    if app_i18n is not None:
        app_i18n.warned = True
    logger.warning(
        "a locale_resolver is registered but Flask-Babel is not initialised on the app: "
        "notifications are not translated (pip install 'Flask-Notifications[i18n]' and "
        "call Babel(app))"
    )


def _babel_importable() -> bool:
    try:
        import flask_babel  # noqa: F401
    except ImportError:
        return False
    return True


def by_locale(items: Iterable[T], user_of: Callable[[T], str | None]) -> dict[str, list[T]]:
    """``items`` grouped by their user's locale (see :func:`locales_for`), so
    that each locale is rendered once.

    :param items: recipients, subscriptions, ...
    :param user_of: the user id of an item (``None``: the default locale).
    """
    items = list(items)
    locales = locales_for(user_of(item) for item in items)
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(locales[user_of(item)], []).append(item)
    return groups


@contextmanager
def in_locale(locale: str) -> Iterator[None]:
    """Render (translate) in ``locale`` inside the block, with Flask-Babel's
    ``force_locale``; without Flask-Babel on the app, a no-op.

    :param locale: a locale name such as ``"fr"``.
    """
    if not babel_on():
        yield
        return
    from flask_babel import force_locale

    with force_locale(locale):
        # The two catalogs of this locale, looked up once for the whole block
        # (each template render translates its strings).
        previous = g.get(_CATALOGS)
        setattr(g, _CATALOGS, _catalogs())
        try:
            yield
        finally:
            setattr(g, _CATALOGS, previous)


#: Attribute of ``flask.g`` holding the catalogs of the block of :func:`in_locale`.
_CATALOGS = "_flask_notifications_catalogs"


def _catalogs() -> tuple[Any, Any]:
    """The app's and the package's translations in the current locale."""
    cached = g.get(_CATALOGS)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    from flask_babel import get_domain

    app_i18n = _app_i18n()
    package = app_i18n.domain if app_i18n is not None else _package_domain()
    return get_domain().get_translations(), package.get_translations()


def lookup(msgid: str) -> tuple[str, bool]:
    """The translation of ``msgid`` in the current locale, and whether one
    was found: the app's catalog first, then the package's.

    :param msgid: the message id.
    """
    if not babel_on():
        return msgid, False
    for catalog in _catalogs():
        text = catalog.gettext(msgid)
        if text != msgid:
            return text, True
    return msgid, False


def gettext(msgid: str, **params: Any) -> str:
    """``msgid`` translated in the current locale (app's catalog, then the
    package's), formatted with ``params`` when given. The templates of the
    e-mail consumers get it as ``_`` and ``gettext``.

    :param msgid: the message id.
    :param params: values of its ``%(name)s`` placeholders.
    """
    text, _found = lookup(msgid)
    return _format(text, msgid, params)


def ngettext(singular: str, plural: str, num: int, **params: Any) -> str:
    """The plural form of a message for ``num`` in the current locale (app's
    catalog, then the package's), formatted with ``num`` and ``params``.

    :param singular: the singular msgid.
    :param plural: the plural msgid.
    :param num: the number (also the ``%(num)d`` placeholder).
    :param params: values of further placeholders.
    """
    params.setdefault("num", num)
    source = singular if num == 1 else plural
    if not babel_on():
        return _format(source, source, params)
    text = source
    for catalog in _catalogs():
        text = catalog.ngettext(singular, plural, num)
        if text not in (singular, plural):
            break
    return _format(text, source, params)


def _format(text: str, source: str, params: dict[str, Any]) -> str:
    """``text % params``; a translation that does not fit its parameters
    (a translator's typo) falls back to the source message."""
    if not params:
        return text
    try:
        return text % params
    except (TypeError, ValueError, KeyError) as exc:
        if text is source:
            raise
        logger.warning("translation %r does not format (%s); the msgid is used", text[:80], exc)
        return source % params
