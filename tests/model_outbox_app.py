"""An app whose model inserts send events, for the outbox tests.

``python tests/model_outbox_app.py`` commits one ``Post`` and is SIGKILLed
right after the commit, before the event is sent (a listener placed first).
Settings come from the environment: ``REDIS_URL``, ``OUTBOX_DB`` (SQLite file
of the models, the outbox and the inbox), ``OUTBOX_LOG`` (what the consumer
writes), ``OUTBOX_AFTER`` (seconds before workers sweep a row).
"""

from __future__ import annotations

import os
import signal

from flask import Flask
from sqlalchemy import Column, Integer, String, create_engine
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, declarative_base

from flask_notifications import Event, Notifications
from flask_notifications.consumers import LogConsumer

DATABASE = os.environ["OUTBOX_DB"]
app = Flask(__name__, instance_path=os.path.dirname(DATABASE))
app.config.update(
    NOTIFICATIONS_REDIS_URL=os.environ["REDIS_URL"],
    NOTIFICATIONS_DATABASE_URI=f"sqlite:///{DATABASE}",
    NOTIFICATIONS_MODEL_OUTBOX_AFTER=float(os.environ.get("OUTBOX_AFTER", "30")),
    broker_connection_retry_on_startup=True,
)
notifications = Notifications(app)
celery = notifications.celery
notifications.create_hub("Posts").register_consumer(LogConsumer(os.environ["OUTBOX_LOG"]))

Base = declarative_base()


class Post(Base):  # type: ignore[misc,valid-type]
    __tablename__ = "posts"
    id = Column(Integer, primary_key=True)
    title = Column(String(100), nullable=False)


engine = create_engine(f"sqlite:///{DATABASE}")
Base.metadata.create_all(engine)
notifications.on_insert(Post, lambda post: Event(f"post-{post.id}", "post", post.title, ""))


def commit_and_die() -> None:
    """Commit one post, then die before the event leaves the process."""
    sa_event.listen(
        Session, "after_commit", lambda _s: os.kill(os.getpid(), signal.SIGKILL), insert=True
    )
    with app.app_context(), Session(engine) as session:
        session.add(Post(title="written, then killed"))
        session.commit()


if __name__ == "__main__":
    commit_and_die()
