"""Logging in and out (Flask-Login); the users are in models.py."""

from __future__ import annotations

from urllib.parse import urlsplit

from extensions import db
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user, logout_user
from models import User
from sqlalchemy import select

__all__ = ["bp"]

bp = Blueprint("accounts", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Log in with a username and a password."""
    if current_user.is_authenticated:
        return redirect(url_for("posts.index"))
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
            next_page = url_for("posts.index")
        return redirect(next_page)
    return render_template("login.html", username="")


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Log out and go back to the login page."""
    logout_user()
    return redirect(url_for("accounts.login"))
