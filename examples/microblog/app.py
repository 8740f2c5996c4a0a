"""Private messages with a live unread badge, on Flask-Notifications.

Users log in (Flask-Login), send each other private messages and read them on
a Messages page; the navigation bar shows how many are unread, updated live.

How a message travels:

1. ``send_message`` commits a :class:`Message` row. ``notifications.on_insert``
   turns the committed row into a ``"message"`` event and hands it to
   ``notifications.send()``; a rolled-back message sends nothing.
2. The ``Messages`` hub takes ``"message"`` events; a Celery worker runs its
   consumers: ``StoreConsumer`` keeps the event in the recipient's inbox (the
   unread count is the inbox's), ``PushConsumer`` publishes it to the
   recipient's open pages, and ``FlaskMailConsumer`` e-mails it only if it
   is still unread ``MICROBLOG_EMAIL_UNREAD_AFTER`` seconds later (2 minutes;
   ``if_unread_after``, a durable timer the workers sweep).
3. Each page's inbox widget (``{{ notifications_inbox() }}`` in base.html: a
   bell, its badge and a dropdown of the inbox, on the JavaScript client)
   receives the new unread count over Server-Sent Events, or polls the inbox
   API when streaming fails, and updates the badge and the dropdown; its
   "Mark read" buttons use the inbox API.
4. Opening the Messages page marks the inbox read, which pushes a count of 0
   to every open page of that user.
5. Languages: each user picks English or French (``POST /language``). Pages
   are translated by Flask-Babel; the notification's title is sent as a
   message id with parameters (``i18n``), so each recipient's e-mail comes in
   their language (``@notifications.locale_resolver``), from the French
   catalog in ``translations/`` (see README.md for the pybabel commands).
6. "Remind me" on the Messages page schedules a reminder notification for
   later (``send(event, delay=...)``; see reminders.py).
7. Comments on a post notify its author, grouped per post (one inbox item,
   "bob and 1 other commented on your post (3)", updated in place); follows
   are throttled (``MICROBLOG_FOLLOW_LIMIT`` per ``MICROBLOG_FOLLOW_WINDOW``
   seconds and user on the open pages, the rest as one summary).
8. Operations: the Messages page shows, under each message, what the
   delivery log recorded for it (inbox, stream, e-mail); with
   ``prometheus_client`` installed (the ``metrics`` extra), ``/metrics``
   serves the Prometheus metrics.

Run it from this directory, with a Redis on ``REDIS_URL`` (default
``redis://localhost:6379/0``)::

    flask --app app run                             # creates the tables and accounts
    celery -A app:celery worker --loglevel=INFO     # runs the consumers

or everything at once from the repository root: ``./run-demo.sh``.
"""

from __future__ import annotations

import importlib.util
import os
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Flask,
    abort,
    flash,
    has_request_context,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import Babel, gettext, refresh
from flask_login import (
    LoginManager,
    UserMixin,
    current_user,
    login_required,
    login_user,
    logout_user,
)
from flask_sqlalchemy import SQLAlchemy
from reminders import install as install_reminders
from sqlalchemy import ForeignKey, String, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from flask_notifications import Event, Notifications
from flask_notifications.consumers import PushConsumer, StoreConsumer
from flask_notifications.consumers.flaskmail_consumer import FlaskMailConsumer
from flask_notifications.filters import WithEventType

#: The accounts created at start-up (password: ``demo``) and their language.
DEMO_USERS = {"alice": "en", "bob": "en", "carol": "fr"}
#: The languages a user can choose.
LANGUAGES = {"en": "English", "fr": "Français"}
DEMO_PASSWORD = "demo"
#: The longest message body, in characters.
MAX_MESSAGE = 140

app = Flask(__name__)
app.config.update(
    SECRET_KEY=os.environ.get("SECRET_KEY", "dev only: set SECRET_KEY in production"),
    # A relative SQLite path lives in the instance folder (Flask-SQLAlchemy 3).
    SQLALCHEMY_DATABASE_URI="sqlite:///" + os.environ.get("MICROBLOG_DATABASE", "microblog.sqlite"),
    NOTIFICATIONS_REDIS_URL=os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
    MAIL_SERVER=os.environ.get("MAIL_SERVER", "localhost"),
    MAIL_PORT=int(os.environ.get("MAIL_PORT", "8025")),
    MAIL_DEFAULT_SENDER="microblog@example.com",
    # A message is e-mailed only if still unread this many seconds after it was
    # sent; "Remind me" reminds this many seconds later.
    MICROBLOG_EMAIL_UNREAD_AFTER=float(os.environ.get("MICROBLOG_EMAIL_UNREAD_AFTER", "120")),
    MICROBLOG_REMIND_AFTER=float(os.environ.get("MICROBLOG_REMIND_AFTER", "600")),
    # Follow notifications: at most this many per window and user, the rest
    # as one summary at the window's end.
    MICROBLOG_FOLLOW_LIMIT=int(os.environ.get("MICROBLOG_FOLLOW_LIMIT", "3")),
    MICROBLOG_FOLLOW_WINDOW=float(os.environ.get("MICROBLOG_FOLLOW_WINDOW", "60")),
    # The Prometheus metrics, when the metrics extra is installed.
    NOTIFICATIONS_METRICS_ENDPOINT=(
        "/metrics" if importlib.util.find_spec("prometheus_client") else None
    ),
    # The categories users can turn off per channel on the Settings page;
    # "security" (NOTIFICATIONS_CRITICAL_CATEGORIES' default) is always on.
    NOTIFICATIONS_CATEGORIES=("messages",),
)


class Base(DeclarativeBase):
    """The declarative base of the models."""


db = SQLAlchemy(app, model_class=Base)
login_manager = LoginManager(app)
login_manager.login_view = "login"  # where @login_required sends anonymous users


class User(UserMixin, db.Model):  # type: ignore[name-defined,misc]
    """An account; Flask-Login's ``get_id()`` (the id as a string) is also the
    user id of the notifications: events are addressed to it."""

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(256))
    #: The language of the user's pages and notifications (a key of LANGUAGES).
    locale: Mapped[str] = mapped_column(String(16), default="en")

    def set_password(self, password: str) -> None:
        """Store a hash of ``password``.

        :param password: the new password.
        """
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        """Whether ``password`` is this user's password.

        :param password: the password to check.
        """
        return check_password_hash(self.password_hash, password)


class Message(db.Model):  # type: ignore[name-defined,misc]
    """A private message from one user to another."""

    id: Mapped[int] = mapped_column(primary_key=True)
    sender_id: Mapped[int] = mapped_column(ForeignKey(User.id), index=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey(User.id), index=True)
    body: Mapped[str] = mapped_column(String(MAX_MESSAGE))
    timestamp: Mapped[datetime] = mapped_column(index=True, default=lambda: datetime.now(UTC))

    sender: Mapped[User] = relationship(foreign_keys=[sender_id])
    recipient: Mapped[User] = relationship(foreign_keys=[recipient_id])


class Post(db.Model):  # type: ignore[name-defined,misc]
    """A public post; others comment on it."""

    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey(User.id), index=True)
    body: Mapped[str] = mapped_column(String(MAX_MESSAGE))
    timestamp: Mapped[datetime] = mapped_column(index=True, default=lambda: datetime.now(UTC))

    author: Mapped[User] = relationship()
    comments: Mapped[list[Comment]] = relationship(back_populates="post", order_by="Comment.id")


class Follow(db.Model):  # type: ignore[name-defined,misc]
    """``follower`` follows ``followed``: each new follow notifies ``followed``."""

    id: Mapped[int] = mapped_column(primary_key=True)
    follower_id: Mapped[int] = mapped_column(ForeignKey(User.id), index=True)
    followed_id: Mapped[int] = mapped_column(ForeignKey(User.id), index=True)

    follower: Mapped[User] = relationship(foreign_keys=[follower_id])


class Comment(db.Model):  # type: ignore[name-defined,misc]
    """A comment on a post: its author is notified, one inbox item per post."""

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey(Post.id), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey(User.id))
    body: Mapped[str] = mapped_column(String(MAX_MESSAGE))
    timestamp: Mapped[datetime] = mapped_column(default=lambda: datetime.now(UTC))

    post: Mapped[Post] = relationship(back_populates="comments")
    author: Mapped[User] = relationship()


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """Flask-Login's loader: the user of the session, if they still exist.

    :param user_id: the id stored in the session.
    """
    return db.session.get(User, int(user_id))


def page_locale() -> str | None:
    """Flask-Babel's locale selector: the user's language, else the browser's."""
    if current_user.is_authenticated:
        return current_user.locale
    return request.accept_languages.best_match(LANGUAGES)


# Translations of the pages and of the notifications: translations/<lang>/LC_MESSAGES.
babel = Babel(app, locale_selector=page_locale)

# -- notifications ---------------------------------------------------------------------

notifications = Notifications(app)
celery = app.extensions["notifications"].celery  # for `celery -A app:celery worker`
redis = app.extensions["notifications"].redis

# The web process and the worker both import this module, so both build the
# same hub (its id derives from the label) with the same consumers.
messages_hub = notifications.create_hub("Messages")
messages_hub.filter_by(WithEventType("message", "reminder"))
messages_hub.register_consumer(StoreConsumer())  # the inbox: unread counts, dropdown
messages_hub.register_consumer(PushConsumer(redis, messages_hub.hub_id))  # open pages

# -- e-mail ------------------------------------------------------------------------------
# A message still unread MICROBLOG_EMAIL_UNREAD_AFTER seconds after it was sent
# is e-mailed to its recipient, by a worker, through Flask-Mail (MAIL_SERVER,
# MAIL_PORT and MAIL_DEFAULT_SENDER above); one read in time is not. When no
# SMTP server listens, this consumer fails and retries later; pages, the
# inbox and the badge are not affected.
messages_hub.register_consumer(
    FlaskMailConsumer.from_app(app, subject_prefix="[Microblog] "),
    if_unread_after=timedelta(seconds=app.config["MICROBLOG_EMAIL_UNREAD_AFTER"]),
)


@notifications.email_resolver
def email_of(user_id: str) -> str | None:
    """The address the e-mail consumer sends a recipient's mails to.

    :param user_id: an event recipient (a user id, as a string).
    """
    user = db.session.get(User, int(user_id)) if user_id.isdigit() else None
    return user.email if user is not None else None


@notifications.locale_resolver
def locale_of(user_id: str) -> str | None:
    """The language the consumers render a recipient's notifications in.

    :param user_id: an event recipient (a user id, as a string).
    """
    user = db.session.get(User, int(user_id)) if user_id.isdigit() else None
    return user.locale if user is not None else None


def N_(msgid: str) -> str:  # noqa: N802 - the usual gettext marker
    """Mark ``msgid`` for ``pybabel extract -k N_``: it is translated later,
    per recipient, by the consumers."""
    return msgid


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
        client_action=url_for("messages"),
        category="messages",  # users can turn it off per channel (Settings)
    )


# Sent after the commit, through notifications.send(): the hubs and the worker.
notifications.on_insert(Message, message_event)
install_reminders(app, notifications, db, Message)  # "Remind me" (reminders.py)

# -- comments, grouped per post ------------------------------------------------------------
# One inbox item per post and reader: "bob and 2 others commented on your
# post (5)", updated in place on the author's open pages.
activity_hub = notifications.create_hub("Activity")
activity_hub.filter_by(WithEventType("comment"))
activity_hub.register_consumer(StoreConsumer())  # first: the stream sends the stored item
activity_hub.register_consumer(PushConsumer(redis, activity_hub.hub_id))


def comment_event(comment: Comment) -> Event | None:
    """The notification of a comment, for the post's author (none for their own).

    :param comment: the comment, flushed but not yet committed.
    """
    post = comment.post
    if comment.author_id == post.author_id:
        return None
    return Event(
        None,
        "comment",
        f"{comment.author.username} commented on your post",
        comment.body,
        sender=comment.author_id,
        recipients=[post.author_id],
        group=f"post:{post.id}:comments",
        post_id=post.id,
    )


notifications.on_insert(Comment, comment_event)

# -- follows, throttled ------------------------------------------------------------------------
# At most MICROBLOG_FOLLOW_LIMIT follow notifications per window and user on
# the open pages; the others come as one "N more notifications" summary when
# the window ends. The inbox still keeps every follow.
follows_hub = notifications.create_hub("Follows")
follows_hub.filter_by(WithEventType("follow"))
follows_hub.throttle(
    limit=app.config["MICROBLOG_FOLLOW_LIMIT"],
    per=timedelta(seconds=app.config["MICROBLOG_FOLLOW_WINDOW"]),
)
follows_hub.register_consumer(StoreConsumer())
follows_hub.register_consumer(PushConsumer(redis, follows_hub.hub_id))


def follow_event(follow: Follow) -> Event:
    """The notification of a new follower.

    :param follow: the follow, flushed but not yet committed.
    """
    return Event(
        None,
        "follow",
        f"{follow.follower.username} followed you",
        "",
        sender=follow.follower_id,
        recipients=[follow.followed_id],
    )


notifications.on_insert(Follow, follow_event)


# -- views -------------------------------------------------------------------------------


@app.context_processor
def navigation() -> dict[str, object]:
    """What base.html's navigation needs: the inbox widget's texts in the
    page's language, and the settings page it links to."""
    return {
        # Templates also render in the worker (the e-mails), outside any request.
        "settings_url": url_for("settings") if has_request_context() else None,
        "inbox_labels": {
            "bell": gettext("Notifications"),
            "heading": gettext("Notifications"),
            "unread": gettext("{n} unread"),
            "empty": gettext("No notifications yet."),
            "loading": gettext("Loading…"),
            "error": gettext("The notifications could not be loaded."),
            "loadMore": gettext("Load more"),
            "markRead": gettext("Mark read"),
            "markAllRead": gettext("Mark all read"),
            "preferences": gettext("Notification settings"),
            "unreadItem": gettext("Unread:"),
            "othersOne": gettext("{actor} and 1 other"),
            "othersMany": gettext("{actor} and {n} others"),
        },
    }


@app.template_global()
def usernames() -> dict[str, str]:
    """User id (a string, as in events) -> username, for the pages' script
    to name a group's ``actors`` (a demo has few users)."""
    return {str(u.id): u.username for u in db.session.scalars(select(User))}


@app.get("/")
@login_required
def index() -> ResponseReturnValue:
    """The other users, each with a link to send them a message, and the newest posts."""
    users = db.session.scalars(
        select(User).where(User.id != current_user.id).order_by(User.username)
    ).all()
    posts = db.session.scalars(select(Post).order_by(Post.id.desc()).limit(20)).all()
    following = set(
        db.session.scalars(select(Follow.followed_id).filter_by(follower_id=current_user.id))
    )
    return render_template(
        "index.html",
        users=users,
        languages=LANGUAGES,
        posts=posts,
        max_message=MAX_MESSAGE,
        following=following,
    )


def _text_field(name: str) -> str | None:
    """The form field ``name``, stripped, or ``None`` when empty or too long."""
    text = request.form.get(name, "").strip()
    return text if 0 < len(text) <= MAX_MESSAGE else None


@app.post("/posts")
@login_required
def new_post() -> ResponseReturnValue:
    """Publish a post."""
    body = _text_field("body")
    if body is None:
        flash(f"A post has 1 to {MAX_MESSAGE} characters.")
        return redirect(url_for("index")), 303
    post = Post(author=current_user, body=body)
    db.session.add(post)
    db.session.commit()
    return redirect(url_for("show_post", post_id=post.id))


@app.get("/posts/<int:post_id>")
@login_required
def show_post(post_id: int) -> ResponseReturnValue:
    """A post, its comments and a form to comment.

    :param post_id: the post's id; 404 when there is none.
    """
    post = db.get_or_404(Post, post_id)
    return render_template("post.html", post=post, max_message=MAX_MESSAGE)


@app.post("/posts/<int:post_id>/comments")
@login_required
def comment(post_id: int) -> ResponseReturnValue:
    """Comment on a post: its author gets a notification grouped per post.

    :param post_id: the post's id; 404 when there is none.
    """
    post = db.get_or_404(Post, post_id)
    body = _text_field("body")
    if body is None:
        flash(f"A comment has 1 to {MAX_MESSAGE} characters.")
        return render_template("post.html", post=post, max_message=MAX_MESSAGE), 400
    db.session.add(Comment(post=post, author=current_user, body=body))
    db.session.commit()  # on_insert sends the "comment" event now
    return redirect(url_for("show_post", post_id=post.id))


@app.post("/follow/<username>")
@login_required
def toggle_follow(username: str) -> ResponseReturnValue:
    """Follow ``username``, or stop following them; a new follow notifies them.

    :param username: the user; 404 when nobody has that name.
    """
    user = db.first_or_404(select(User).filter_by(username=username))
    if user.id == current_user.id:
        abort(400)
    follow = db.session.scalar(
        select(Follow).filter_by(follower_id=current_user.id, followed_id=user.id)
    )
    if follow is None:
        db.session.add(Follow(follower=current_user, followed_id=user.id))
    else:
        db.session.delete(follow)
    db.session.commit()  # on_insert sends the "follow" event now
    return redirect(url_for("index"))


@app.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Log in with a username and a password."""
    if current_user.is_authenticated:
        return redirect(url_for("index"))
    if request.method == "POST":
        username = request.form.get("username", "")
        user = db.session.scalar(select(User).filter_by(username=username))
        if user is None or not user.check_password(request.form.get("password", "")):
            flash("Invalid username or password.")
            return render_template("login.html", username=username), 401
        login_user(user)
        next_page = request.args.get("next", "")
        # Only a path on this site: never an open redirect.
        if not next_page.startswith("/") or urlsplit(next_page).netloc:
            next_page = url_for("index")
        return redirect(next_page)
    return render_template("login.html", username="")


@app.post("/logout")
def logout() -> ResponseReturnValue:
    """Log out and go back to the login page."""
    logout_user()
    return redirect(url_for("login"))


@app.route("/send/<recipient>", methods=["GET", "POST"])
@login_required
def send_message(recipient: str) -> ResponseReturnValue:
    """A form to send ``recipient`` a private message.

    :param recipient: the recipient's username; 404 when nobody has it.
    """
    user = db.first_or_404(select(User).filter_by(username=recipient))
    if request.method == "POST":
        body = request.form.get("message", "").strip()
        if not body or len(body) > MAX_MESSAGE:
            flash(f"A message has 1 to {MAX_MESSAGE} characters.")
            return render_template(
                "send_message.html", recipient=user, body=body, max_message=MAX_MESSAGE
            ), 400
        db.session.add(Message(sender=current_user, recipient=user, body=body))
        db.session.commit()  # on_insert sends the "message" event now
        flash(f"Your message to {user.username} has been sent.")
        return redirect(url_for("index"))
    return render_template("send_message.html", recipient=user, body="", max_message=MAX_MESSAGE)


@app.post("/language")
@login_required
def set_language() -> ResponseReturnValue:
    """Change the signed-in user's language (pages and notifications)."""
    locale = request.form.get("locale", "")
    if locale not in LANGUAGES:
        abort(400, description=f"language must be one of {', '.join(LANGUAGES)}")
    current_user.locale = locale
    db.session.commit()
    refresh()  # this request's locale was read before the change
    flash(gettext("Language changed."))
    return redirect(url_for("index"))


@app.get("/messages")
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
    inbox gives each message's event id)."""
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


# -- notification settings -------------------------------------------------------------------

#: The channels the Settings page shows, with their labels.
SETTINGS_CHANNELS = {"inbox": N_("In the app"), "stream": N_("Live"), "email": N_("By e-mail")}
#: Labels of the categories (others show their name).
CATEGORY_LABELS = {"messages": N_("Private messages"), "security": N_("Security notices")}
#: The e-mail digest's choices, and the time zones offered for it.
DIGEST_FREQUENCIES = {
    "": N_("One e-mail per notification"),
    "hourly": N_("One e-mail per hour"),
    "daily": N_("One e-mail per day"),
    "weekly": N_("One e-mail per week"),
}
DIGEST_TIMEZONES = ("Europe/Paris", "Europe/London", "America/New_York", "Asia/Tokyo", "UTC")


@app.route("/settings", methods=["GET", "POST"])
@login_required
def settings() -> ResponseReturnValue:
    """Which notifications the user gets on which channel: one switch per
    channel and per channel and category, on the library's preferences
    (``notifications.preferences``, also ``GET``/``PUT /notifications/preferences``).
    Critical categories are shown locked on."""
    prefs = notifications.preferences
    if request.method == "POST":
        current = prefs.get(current_user.id)
        critical = set(current["critical_categories"])
        changes = {
            channel: {
                "enabled": f"{channel}:*" in request.form,
                "categories": {
                    category: f"{channel}:{category}" in request.form
                    for category in current["categories"]
                    if category not in critical
                },
            }
            for channel in SETTINGS_CHANNELS
        }
        changes["email"]["digest"] = digest_from(request.form)
        try:
            prefs.update(current_user.id, {"channels": changes})
        except ValueError as exc:  # InvalidQueryError: a hand-made form
            flash(str(exc))
            return settings_page(prefs.get(current_user.id)), 400
        flash(gettext("Your notification settings have been saved."))
        return redirect(url_for("settings"))
    return settings_page(prefs.get(current_user.id))


def digest_from(form: Any) -> dict[str, object] | None:
    """The e-mail digest the settings form asks for (``None``: off).

    :param form: the posted form.
    """
    frequency = form.get("digest", "")
    if not frequency:
        return None
    hour, weekday = form.get("digest_hour", "8"), form.get("digest_weekday", "0")
    return {
        "frequency": frequency,
        "hour": int(hour) if hour.isdigit() else hour,  # the library checks the range
        "weekday": int(weekday) if weekday.isdigit() else weekday,
        "timezone": form.get("digest_timezone", "UTC"),
    }


def settings_page(preferences: dict[str, Any]) -> str:
    """The settings page for ``preferences`` (``notifications.preferences.get()``).

    :param preferences: the user's preferences.
    """
    weekdays = [N_("Monday"), N_("Tuesday"), N_("Wednesday"), N_("Thursday"), N_("Friday"),
                N_("Saturday"), N_("Sunday")]  # fmt: skip
    return render_template(
        "settings.html",
        preferences=preferences,
        digest=preferences["channels"]["email"]["digest"],
        channels={channel: gettext(label) for channel, label in SETTINGS_CHANNELS.items()},
        labels={category: gettext(label) for category, label in CATEGORY_LABELS.items()},
        frequencies={key: gettext(label) for key, label in DIGEST_FREQUENCIES.items()},
        weekdays=[gettext(day) for day in weekdays],
        timezones=DIGEST_TIMEZONES,
    )


# -- start-up ------------------------------------------------------------------------------


def init_db() -> None:
    """Create the tables and the demo accounts, when missing. A real
    application would use migrations (Flask-Migrate) instead."""
    db.create_all()
    notifications.inbox.create_tables()  # the inbox's tables, in the same database
    columns = {c["name"] for c in inspect(db.engine).get_columns(User.__tablename__)}
    if "locale" not in columns:  # a database from before the language setting
        with db.engine.begin() as connection:
            connection.execute(text("ALTER TABLE user ADD COLUMN locale VARCHAR(16) DEFAULT 'en'"))
    if db.session.scalar(select(User).limit(1)) is not None:
        return
    for name, locale in DEMO_USERS.items():
        user = User(username=name, email=f"{name}@example.com", locale=locale)
        user.set_password(DEMO_PASSWORD)
        db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:  # another process (the worker) seeded them first
        db.session.rollback()


with app.app_context():
    init_db()
