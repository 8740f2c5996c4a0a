"""Private messages: the ``Messages`` hub (inbox, open pages, e-mail of what
stays unread), the ``message`` event of each new message, the page to send
one and the Messages page with each message's delivery log."""

from __future__ import annotations

from datetime import timedelta

from config import MAX_MESSAGE
from extensions import N_, db, inbox_hub, notifications
from flask import Blueprint, Flask, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from forms import form_text
from models import Message, User, user_by_id
from reminders import install as install_reminders
from sqlalchemy import select

from flask_notifications import Event
from flask_notifications.consumers.flaskmail_consumer import FlaskMailConsumer

__all__ = ["bp", "deliveries_of", "email_of", "init_app", "message_event"]

bp = Blueprint("messages", __name__)

# -- notifications ---------------------------------------------------------------------


def init_app(app: Flask) -> None:
    """Build the ``Messages`` hub and add the messages' pages (and the
    reminders', reminders.py) to ``app``.

    :param app: the microblog, ``notifications`` already registered on it.
    """
    # "reminder" events: "Remind me" on the Messages page (reminders.py).
    hub = inbox_hub(app, "Messages", "message", "reminder")
    # -- e-mail --------------------------------------------------------------------------
    # A message still unread MICROBLOG_EMAIL_UNREAD_AFTER seconds after it was
    # sent is e-mailed to its recipient, by a worker, through Flask-Mail
    # (MAIL_SERVER, MAIL_PORT and MAIL_DEFAULT_SENDER, config.py); one read in
    # time is not. When no SMTP server listens, this consumer fails and
    # retries later; pages, the inbox and the badge are not affected.
    hub.register_consumer(
        FlaskMailConsumer.from_app(app, subject_prefix="[Microblog] "),
        if_unread_after=timedelta(seconds=app.config["MICROBLOG_EMAIL_UNREAD_AFTER"]),
    )
    app.register_blueprint(bp)
    install_reminders(app, notifications, db, Message)


@notifications.email_resolver
def email_of(user_id: str) -> str | None:
    """The address the e-mail consumer sends a recipient's mails to.

    :param user_id: an event recipient (a user id, as a string).
    """
    user = user_by_id(user_id)
    return user.email if user is not None else None


def message_event(message: Message) -> Event:
    """The notification of a new private message (called by ``on_insert``);
    its ``client_action`` makes its title in the inbox widget a link to the
    Messages page.

    The title is a message id with a parameter: each recipient gets it in
    their language. It is empty here: ``send()`` fills it with the English
    text, which the inbox and the live dropdown show. The body is the
    message itself, never translated.

    :param message: the message, flushed (it has its id) but not yet committed.
    """
    return Event(
        None,
        "message",
        "",
        message.body,
        i18n={
            "title": N_("New message from %(sender)s"),
            "params": {"sender": message.sender.username},
        },
        sender=message.sender_id,
        recipients=[message.recipient_id],
        message_id=message.id,
        client_action=url_for("messages.messages"),
        category="messages",  # users can turn it off per channel (Settings)
    )


# Sent after the commit, through notifications.send(): the hubs and the worker.
notifications.on_insert(Message, message_event)


# -- views -------------------------------------------------------------------------------


@bp.route("/send/<recipient>", methods=["GET", "POST"])
@login_required
def send_message(recipient: str) -> ResponseReturnValue:
    """A form to send ``recipient`` a private message.

    :param recipient: the recipient's username; 404 when nobody has it.
    """
    user = db.first_or_404(select(User).filter_by(username=recipient))
    if request.method == "POST":
        body, valid = form_text("message")
        if not valid:
            flash(f"A message has 1 to {MAX_MESSAGE} characters.")
            return render_template(
                "send_message.html", recipient=user, body=body, max_message=MAX_MESSAGE
            ), 400
        db.session.add(Message(sender=current_user, recipient=user, body=body))
        db.session.commit()  # on_insert sends the "message" event now
        flash(f"Your message to {user.username} has been sent.")
        return redirect(url_for("posts.index"))
    return render_template("send_message.html", recipient=user, body="", max_message=MAX_MESSAGE)


@bp.get("/messages")
@login_required
def messages() -> ResponseReturnValue:
    """The messages received, newest first; opening the page reads them all."""
    # Resets the badge of every open page of this user (a live count of 0).
    notifications.inbox.mark_all_read(current_user.id)
    page = db.paginate(
        select(Message)
        .where(Message.recipient_id == current_user.id)
        .order_by(Message.timestamp.desc(), Message.id.desc()),
        per_page=10,
    )
    return render_template("messages.html", page=page, deliveries=deliveries_of(page.items))


def deliveries_of(shown: list[Message]) -> dict[int, list[tuple[str, str]]]:
    """``message id -> [(channel, status), ...]``: what the delivery log
    recorded of each message's notification for the current user (the
    inbox gives each message's event id).

    :param shown: the messages on the page.
    """
    wanted = {message.id for message in shown}
    recent = notifications.inbox.list(current_user.id, page=1, per_page=100).items
    events = {
        item["data"].get("message_id"): item["event_id"]
        for item in recent
        if item["event_type"] == "message" and item["data"].get("message_id") in wanted
    }
    me = str(current_user.id)
    return {
        message_id: [
            (record["channel"], record["status"])
            for record in notifications.deliveries(event_id)
            if record["recipient"] == me
        ]
        for message_id, event_id in events.items()
    }
