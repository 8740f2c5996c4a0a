"""Helpers the per-user delivery consumers share (e-mail, Web Push, mobile push)."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, has_app_context

from ..delivery import log as delivery_log
from ..event import Event

if TYPE_CHECKING:
    from ..mobile.store import Device


#: Custom fields that steer the delivery (which consumers get the event) and
#: are never sent in a push's custom data.
INTERNAL_FIELDS = ("channels",)


def push_data(event: Event, skip: Collection[str] = ()) -> dict[str, Any]:
    """The custom data a push (Web Push ``data``, FCM ``data``, APNs custom
    keys) carries for ``event``: its ``event_id``, ``event_type`` and
    ``sender``, and its custom fields except :data:`INTERNAL_FIELDS` and
    ``skip`` (those the push maps elsewhere).

    :param event: the event.
    :param skip: further custom fields to leave out.
    """
    data: dict[str, Any] = {
        "event_id": event["event_id"],
        "event_type": event["event_type"],
        "sender": event["sender"],
    }
    data.update(
        (k, v)
        for k, v in event.custom_fields.items()
        if k not in INTERNAL_FIELDS and k not in skip and k not in data
    )
    return data


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


def allowed_recipients(event: Event, channel: str, force: bool = False) -> list[str]:
    """The event's recipients (as strings) whose preferences accept it on
    ``channel`` (:meth:`Preferences.allowed
    <flask_notifications.inbox.Preferences.allowed>`: channel, category and
    event-type switches); every recipient when preferences are off. The
    others are recorded ``suppressed`` in the delivery log.

    :param event: the event.
    :param channel: ``"email"``, ``"webpush"``, ...
    :param force: consult the opt-outs even when ``NOTIFICATIONS_PREFERENCES``
        is ``None`` and the app has no database setting (the inbox has one).
    """
    recipients = [str(r) for r in event["recipients"]]
    if not recipients or not has_app_context():
        return recipients
    if not (force or preferences_on(current_app)):
        return recipients
    extension = current_app.extensions.get("notifications")
    if extension is None:
        return recipients
    allowed = extension.preferences.allowed_for(recipients, event, channel)
    if len(allowed) != len(recipients):
        kept = set(allowed)
        delivery_log.record_many(
            event["event_id"],
            [(r, channel, "suppressed", "opted out") for r in recipients if r not in kept],
        )
    return allowed


def mobile_devices(
    event: Event, channel: str, broadcast: bool, platforms: Collection[str]
) -> list[Device]:
    """The devices of ``platforms`` a mobile push consumer sends ``event`` to:
    the recipients' minus the opt-outs of ``channel``; for a broadcast event
    none, or, with ``broadcast``, every device whose user did not opt out.

    :param event: the event.
    :param channel: the consumer's preferences channel (``"mobile"``).
    :param broadcast: whether broadcast events go to every device.
    :param platforms: e.g. ``("ios",)`` or ``("android", "ios")``.
    """
    from .._state import get_state

    extension = get_state().extension
    store = extension.devices
    if event["recipients"]:
        users = allowed_recipients(event, channel)
        devices = store.for_users(users) if users else []
    elif not broadcast:
        devices = []
    else:
        devices = store.all()
        if devices and preferences_on(current_app):
            users = list(dict.fromkeys(d.recipient for d in devices))
            allowed = set(extension.preferences.allowed_for(users, event, channel))
            devices = [d for d in devices if d.recipient in allowed]
    return [d for d in devices if d.platform in platforms]
