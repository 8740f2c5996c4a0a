"""The microblog's "remind me": a notification scheduled for later.

On the Messages page, "Remind me" schedules a ``reminder`` notification to
the reader, ``MICROBLOG_REMIND_AFTER`` seconds later (10 minutes by default;
the environment variable of the same name overrides it), with
``notifications.send(event, delay=...)``; "Cancel reminder" cancels it with
``notifications.cancel(event_id)``. The reminder's id is derived from the
reader and the message, so pressing "Remind me" twice schedules it once (one
reminder per message).

A worker sends it when due; it reaches the inbox and the open pages (the
``Messages`` hub takes ``reminder`` events), not the e-mail: its
``channels`` field names only ``inbox`` and ``stream``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Flask, abort, current_app, flash, redirect, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from flask_notifications import Event, Notifications

bp = Blueprint("reminders", __name__)


def reminder_id(user_id: Any, message_id: int) -> str:
    """The event id of ``user_id``'s reminder of message ``message_id``.

    :param user_id: the reader.
    :param message_id: the message.
    """
    return f"remind-{user_id}-{message_id}"


def install(app: Flask, notifications: Notifications, db: Any, message_model: type) -> None:
    """Add the reminder routes to ``app``.

    :param app: the microblog.
    :param notifications: its extension.
    :param db: its Flask-SQLAlchemy database.
    :param message_model: its ``Message`` model.
    """
    state = {"notifications": notifications, "db": db, "Message": message_model}
    app.extensions["microblog_reminders"] = state
    app.register_blueprint(bp)


def _own_message(message_id: int) -> Any:
    """The signed-in user's received message ``message_id``, else 404."""
    state = current_app.extensions["microblog_reminders"]
    message = state["db"].session.get(state["Message"], message_id)
    if message is None or message.recipient_id != current_user.id:
        abort(404)
    return message


@bp.post("/messages/<int:message_id>/remind")
@login_required
def remind(message_id: int) -> ResponseReturnValue:
    """Schedule a reminder of message ``message_id`` for the signed-in user."""
    message = _own_message(message_id)
    notifications = current_app.extensions["microblog_reminders"]["notifications"]
    seconds = float(current_app.config["MICROBLOG_REMIND_AFTER"])
    notifications.send(
        Event(
            reminder_id(current_user.id, message.id),
            "reminder",
            f"Reminder: message from {message.sender.username}",
            message.body,
            recipients=[current_user.id],
            channels=["inbox", "stream"],  # no e-mail for a reminder
            client_action=url_for("messages.messages"),
        ),
        delay=timedelta(seconds=seconds),
    )
    flash(f"We will remind you of this message in {_duration(seconds)}.")
    return redirect(url_for("messages.messages"))


@bp.post("/messages/<int:message_id>/remind/cancel")
@login_required
def cancel_reminder(message_id: int) -> ResponseReturnValue:
    """Cancel the signed-in user's pending reminder of message ``message_id``."""
    message = _own_message(message_id)
    notifications = current_app.extensions["microblog_reminders"]["notifications"]
    if notifications.cancel(reminder_id(current_user.id, message.id)):
        flash("Reminder cancelled.")
    else:
        flash("No pending reminder for this message (already sent?).")
    return redirect(url_for("messages.messages"))


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"
