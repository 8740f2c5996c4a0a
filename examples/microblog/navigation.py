"""What base.html's navigation needs: the settings page the inbox widget
links to, and the users' names. (The widget's own texts come in the page's
language from Flask-Notifications' catalog: docs/widget.rst.)"""

from __future__ import annotations

from extensions import db
from flask import Flask, has_request_context, url_for
from models import User
from sqlalchemy import select

__all__ = ["init_app", "navigation", "usernames"]


def init_app(app: Flask) -> None:
    """Give ``app``'s templates :func:`navigation` and :func:`usernames`.

    :param app: the microblog.
    """
    app.context_processor(navigation)
    app.add_template_global(usernames)


def navigation() -> dict[str, object]:
    """The context processor of the navigation: the settings page the inbox
    widget links to."""
    return {
        # Templates also render in the worker (the e-mails), outside any request.
        "settings_url": url_for("settings.settings") if has_request_context() else None,
    }


def usernames() -> dict[str, str]:
    """User id (a string, as in events) -> username, for the pages' script
    to name a group's ``actors`` (a demo has few users)."""
    return {str(u.id): u.username for u in db.session.scalars(select(User))}
