"""Posts, comments and follows: the home page, comments notified to the
post's author grouped per post (the ``Activity`` hub), and follows throttled
(the ``Follows`` hub)."""

from __future__ import annotations

from datetime import timedelta

from config import LANGUAGES, MAX_MESSAGE
from extensions import db, inbox_hub, notifications
from flask import Blueprint, Flask, abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required
from forms import form_text
from models import Comment, Follow, Post, User
from sqlalchemy import select

from flask_notifications import Event

__all__ = ["bp", "comment_event", "follow_event", "init_app"]

bp = Blueprint("posts", __name__)


def init_app(app: Flask) -> None:
    """Build the ``Activity`` and ``Follows`` hubs and add the home page,
    the posts' pages and the follow button to ``app``.

    :param app: the microblog, ``notifications`` already registered on it.
    """
    # -- comments, grouped per post ----------------------------------------------------------
    # One inbox item per post and reader: "bob and 2 others commented on your
    # post (5)", updated in place on the author's open pages.
    inbox_hub(app, "Activity", "comment")
    # -- follows, throttled --------------------------------------------------------------------
    # At most MICROBLOG_FOLLOW_LIMIT follow notifications per window and user on
    # the open pages; the others come as one "N more notifications" summary when
    # the window ends. The inbox still keeps every follow.
    inbox_hub(app, "Follows", "follow").throttle(
        limit=app.config["MICROBLOG_FOLLOW_LIMIT"],
        per=timedelta(seconds=app.config["MICROBLOG_FOLLOW_WINDOW"]),
    )
    app.register_blueprint(bp)


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


notifications.on_insert(Comment, comment_event)
notifications.on_insert(Follow, follow_event)


@bp.get("/")
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


@bp.post("/posts")
@login_required
def new_post() -> ResponseReturnValue:
    """Publish a post."""
    body, valid = form_text("body")
    if not valid:
        flash(f"A post has 1 to {MAX_MESSAGE} characters.")
        return redirect(url_for("posts.index")), 303
    post = Post(author=current_user, body=body)
    db.session.add(post)
    db.session.commit()
    return redirect(url_for("posts.show_post", post_id=post.id))


@bp.get("/posts/<int:post_id>")
@login_required
def show_post(post_id: int) -> ResponseReturnValue:
    """A post, its comments and a form to comment.

    :param post_id: the post's id; 404 when there is none.
    """
    post = db.get_or_404(Post, post_id)
    return render_template("post.html", post=post, max_message=MAX_MESSAGE)


@bp.post("/posts/<int:post_id>/comments")
@login_required
def comment(post_id: int) -> ResponseReturnValue:
    """Comment on a post: its author gets a notification grouped per post.

    :param post_id: the post's id; 404 when there is none.
    """
    post = db.get_or_404(Post, post_id)
    body, valid = form_text("body")
    if not valid:
        flash(f"A comment has 1 to {MAX_MESSAGE} characters.")
        return render_template("post.html", post=post, max_message=MAX_MESSAGE), 400
    db.session.add(Comment(post=post, author=current_user, body=body))
    db.session.commit()  # on_insert sends the "comment" event now
    return redirect(url_for("posts.show_post", post_id=post.id))


@bp.post("/follow/<username>")
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
    return redirect(url_for("posts.index"))
