"""Helpers the per-user delivery consumers share (e-mail, Web Push)."""

from __future__ import annotations

from flask import Flask, current_app, has_app_context

from ..event import Event


def preferences_on(app: Flask) -> bool:
    """Whether consumers should consult the opt-outs in ``app``.

    ``NOTIFICATIONS_PREFERENCES = None`` (the default) means: when the app has
    an inbox database, so that an app without one never gets a database just
    for this lookup.

    :param app: the Flask app.
    """
    setting = app.config.get("NOTIFICATIONS_PREFERENCES")
    if setting is None:
        return bool(app.config.get("NOTIFICATIONS_DATABASE_URI") or "sqlalchemy" in app.extensions)
    return bool(setting)


def allowed_recipients(event: Event, channel: str) -> list[str]:
    """The event's recipients (as strings) who did not opt out of its type on
    ``channel``; every recipient when preferences are off.

    :param event: the event.
    :param channel: ``"email"``, ``"webpush"``, ...
    """
    recipients = [str(r) for r in event["recipients"]]
    if not recipients or not has_app_context() or not preferences_on(current_app):
        return recipients
    extension = current_app.extensions.get("notifications")
    if extension is None:
        return recipients
    return extension.preferences.allowed(recipients, event["event_type"], channel)
