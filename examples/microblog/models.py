"""The microblog's models (Flask-SQLAlchemy) and its start-up data."""

from __future__ import annotations

from datetime import UTC, datetime

from config import DEMO_PASSWORD, DEMO_USERS, MAX_MESSAGE
from extensions import db, login_manager, notifications
from flask_login import UserMixin
from sqlalchemy import ForeignKey, String, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

__all__ = ["Comment", "Follow", "Message", "Post", "User", "init_db", "user_by_id"]


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
def user_by_id(user_id: str) -> User | None:
    """The user whose id is ``user_id``, if they exist: Flask-Login's loader
    (the id stored in the session), and the notifications' resolvers (an
    event recipient).

    :param user_id: a user id, as a string.
    """
    return db.session.get(User, int(user_id)) if user_id.isdigit() else None


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
