"""The inbox widget's Jinja global, ``{{ notifications_inbox() }}``, and the
``<script>`` tags of the browser files (each once per request).

:meth:`Notifications.init_app <flask_notifications.Notifications.init_app>`
registers :func:`inbox_widget` as the ``notifications_inbox`` global of each
app's Jinja environment. See ``docs/widget.rst``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping

from flask import current_app, g, has_request_context, url_for
from markupsafe import Markup, escape

from ._state import get_state
from .errors import ConfigurationError
from .i18n import babel_on, lookup

__all__ = ["WIDGET_LABELS", "inbox_widget", "script_tags"]

logger = logging.getLogger("flask_notifications")


def _(msgid: str) -> str:
    """Marks ``msgid`` for ``pybabel extract`` (translated at render time)."""
    return msgid


#: The widget's English texts (the ``LABELS`` of ``flask_notifications_inbox.js``),
#: also the msgids of their translations in the package's catalog
#: (``{n}``: a number, ``{actor}``: the first of a grouped item's actors).
_DEFAULT_LABELS = {
    "bell": _("Notifications"),
    "unread": _("{n} unread"),
    "heading": _("Notifications"),
    "empty": _("No notifications yet."),
    "loading": _("Loading\u2026"),
    "error": _("The notifications could not be loaded."),
    "loadMore": _("Load more"),
    "markRead": _("Mark read"),
    "markAllRead": _("Mark all read"),
    "preferences": _("Notification settings"),
    "unreadItem": _("Unread:"),
    "othersOne": _("{actor} and 1 other"),
    "othersMany": _("{actor} and {n} others"),
}
#: The texts of the widget a ``labels`` mapping may replace.
WIDGET_LABELS = frozenset(_DEFAULT_LABELS)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_THEMES = ("light", "dark", "auto")
_ALIGNS = ("start", "end")
# SSE event names the client can listen to: no spaces (the attribute is space-separated).
_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
CLIENT = "flask_notifications.js"
WIDGET = "flask_notifications_inbox.js"


def script_tags(*filenames: str) -> Markup:
    """``<script defer>`` tags of the extension's static ``filenames``, leaving
    out those already written during this request (or app context), so that
    ``notifications_script()`` and ``notifications_inbox()`` on one page load
    the client once.

    :param filenames: files of ``flask_notifications/static/``.
    :raises RuntimeError: without the extension's blueprint.
    """
    _need_blueprint()
    written: set[str] = g.setdefault("_flask_notifications_scripts", set())
    tags = []
    for name in filenames:
        if name not in written:
            written.add(name)
            src = url_for("notifications.static", filename=name)
            tags.append(f'<script src="{escape(src)}" defer></script>')
    return Markup("".join(tags))


def inbox_widget(
    *,
    hub: str | None = None,
    preferences_url: str | None = None,
    page_size: int = 10,
    theme: str = "light",
    align: str = "end",
    labels: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    types: Iterable[str] = (),
    poll_interval: float = 10.0,
    unread: int | None = None,
    scripts: bool = True,
) -> Markup:
    """The ``<flask-notifications-inbox>`` element of the signed-in user, with
    the ``<script>`` tags it needs; nothing for an anonymous visitor.
    Every value is HTML-escaped.

    :param hub: the label of the hub to stream (its ``unread_count`` events
        move the badge); by default ``NOTIFICATIONS_INBOX_HUB``, else the first
        hub with a :class:`~flask_notifications.consumers.StoreConsumer`.
    :param preferences_url: the link to the user's settings; no link when ``None``.
    :param page_size: items per page, at most ``NOTIFICATIONS_INBOX_MAX_PER_PAGE``.
    :param theme: ``"light"``, ``"dark"`` or ``"auto"`` (the browser's colour scheme).
    :param align: the dropdown's edge aligned with the bell: ``"end"`` (right) or ``"start"``.
    :param labels: texts replacing the defaults (keys: :data:`WIDGET_LABELS`).
        The defaults are English, translated in the request's locale when the
        app uses Flask-Babel (the app's catalog, then the package's).
    :param headers: headers of the widget's requests, e.g. ``{"X-CSRFToken": csrf_token()}``.
    :param types: more event types to listen to on the stream (the widget
        already follows every inbox change through the unread counts).
    :param poll_interval: seconds between polls when the stream is unavailable.
    :param unread: the count shown before the widget asks the server; by
        default the user's unread count, read from the inbox now.
    :param scripts: write the ``<script>`` tags of the client and the widget
        (each once per request).
    :raises ConfigurationError: for an option out of range, or without a hub to stream.
    """
    _need_blueprint()
    extension = get_state().extension
    label = _hub_label(extension, hub)
    attributes = {
        "hub": label,
        "prefix": url_for("notifications.unread_count").rsplit("/unread-count", 1)[0],
        "page-size": str(_page_size(page_size)),
        "theme": _choice("theme", theme, _THEMES),
        "align": _choice("align", align, _ALIGNS),
        "poll-interval": str(_milliseconds(poll_interval)),
    }
    if preferences_url is not None:
        if not isinstance(preferences_url, str) or not preferences_url:
            raise ConfigurationError("preferences_url must be a non-empty string or None")
        attributes["preferences-url"] = preferences_url
    texts = {**_translated_labels(), **_strings("labels", labels or {}, WIDGET_LABELS)}
    if texts:
        attributes["labels"] = _json(texts)
    if headers:
        attributes["headers"] = _json(_strings("headers", headers, None))
    if types:
        attributes["types"] = " ".join(_types(types))
    identity = extension.current_identity() if has_request_context() else None
    if identity is None:
        return Markup("")
    if unread is None:
        unread = extension.inbox.unread_count(identity)
    if isinstance(unread, bool) or not isinstance(unread, int) or unread < 0:
        raise ConfigurationError(f"unread must be an integer >= 0, not {unread!r}")
    attributes["unread"] = str(unread)
    html = "".join(f' {name}="{escape(value)}"' for name, value in attributes.items())
    tags = script_tags(CLIENT, WIDGET) if scripts else Markup("")
    return tags + Markup(f"<flask-notifications-inbox{html}></flask-notifications-inbox>")


def _translated_labels() -> dict[str, str]:
    """With Flask-Babel, every default text in the current locale (the English
    one where no catalog translates it); without it, none (the element's own
    English defaults apply). A translation that lost or added a
    ``{placeholder}`` is not used."""
    if not babel_on():
        return {}
    result = {}
    for key, msgid in _DEFAULT_LABELS.items():
        text, _found = lookup(msgid)
        if set(_PLACEHOLDER.findall(text)) != set(_PLACEHOLDER.findall(msgid)):
            logger.warning(
                "the translation %r of %r changes its {placeholders}; the English text is used",
                text[:80], msgid,
            )  # fmt: skip
            text = msgid
        result[key] = text
    return result


def _need_blueprint() -> None:
    if "notifications" not in current_app.blueprints:
        raise RuntimeError(
            "the notifications scripts and widget need the blueprint "
            "(NOTIFICATIONS_REGISTER_BLUEPRINT); without it, serve "
            "flask_notifications/static/ and the inbox API yourself"
        )


def _hub_label(extension: object, hub: str | None) -> str:
    hubs = extension.hubs  # type: ignore[attr-defined]
    if hub is not None:
        if not any(h.label == hub for h in hubs):
            raise ConfigurationError(f"notifications_inbox(): no hub is labelled {hub!r}")
        return hub
    configured = current_app.config.get("NOTIFICATIONS_INBOX_HUB")
    if configured:
        return str(configured)
    found = extension.inbox_hubs()  # type: ignore[attr-defined]
    if not found:
        raise ConfigurationError(
            "notifications_inbox() needs a hub with a StoreConsumer (or NOTIFICATIONS_INBOX_HUB), "
            "or hub='label'"
        )
    return str(found[0].label)


def _page_size(value: object) -> int:
    limit = current_app.config["NOTIFICATIONS_INBOX_MAX_PER_PAGE"]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise ConfigurationError(f"page_size must be an integer from 1 to {limit}, not {value!r}")
    return value


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigurationError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return str(value)


def _milliseconds(seconds: object) -> int:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not 0.05 <= seconds <= 3600
    ):
        raise ConfigurationError(
            f"poll_interval must be a number of seconds from 0.05 to 3600, not {seconds!r}"
        )
    return round(seconds * 1000)


def _strings(name: str, mapping: object, keys: frozenset[str] | None) -> dict[str, str]:
    if not isinstance(mapping, Mapping):
        raise ConfigurationError(f"{name} must be a mapping of strings, not {mapping!r}")
    result = {}
    for key, value in mapping.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigurationError(f"{name} must map strings to strings, not {key!r}: {value!r}")
        if keys is not None and key not in keys:
            raise ConfigurationError(
                f"{name}: unknown key {key!r} (known: {', '.join(sorted(keys))})"
            )
        result[key] = value
    return result


def _types(types: Iterable[str]) -> list[str]:
    if isinstance(types, str):
        raise ConfigurationError("types must be a list of event types, not a string")
    result = list(types)
    for value in result:
        if not isinstance(value, str) or not _TYPE.fullmatch(value):
            raise ConfigurationError(
                f"types: {value!r} is not an event type (letters, digits, _ . : -)"
            )
    return result


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
