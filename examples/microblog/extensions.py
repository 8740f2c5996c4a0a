"""The microblog's Flask extensions, created unbound: ``app.create_app()``
registers them on the app (``init_app``)."""

from __future__ import annotations

from flask import Flask
from flask_babel import Babel
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase

from flask_notifications import EventHub, Notifications
from flask_notifications.consumers import PushConsumer, StoreConsumer
from flask_notifications.filters import WithEventType

__all__ = ["Base", "babel", "db", "inbox_hub", "login_manager", "N_", "notifications"]


class Base(DeclarativeBase):
    """The declarative base of the models."""


db = SQLAlchemy(model_class=Base)
login_manager = LoginManager()
login_manager.login_view = "accounts.login"  # where @login_required sends anonymous users
# Translations of the pages and of the notifications: translations/<lang>/LC_MESSAGES.
babel = Babel()
notifications = Notifications()


def N_(msgid: str) -> str:  # noqa: N802 - the usual gettext marker
    """Mark ``msgid`` for ``pybabel extract -k N_``: it is translated later,
    per recipient, by the consumers, or when a page renders."""
    return msgid


def inbox_hub(app: Flask, label: str, *event_types: str) -> EventHub:
    """The hub ``label`` for ``event_types``, with the consumers every hub of
    the demo has: ``StoreConsumer`` first (the inbox: unread counts, the
    dropdown; the stream then sends the stored item), then ``PushConsumer``
    (the recipients' open pages).

    The web process and the worker both build the app, so both build the
    same hub (its id derives from the label) with the same consumers.

    :param app: the app, ``notifications`` already registered on it.
    :param label: the hub's label.
    :param event_types: the event types it takes.
    """
    hub = notifications.create_hub(label)
    hub.filter_by(WithEventType(*event_types))
    hub.register_consumer(StoreConsumer())
    hub.register_consumer(PushConsumer(app.extensions["notifications"].redis, hub.hub_id))
    return hub
