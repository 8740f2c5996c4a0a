import os

from flask import Flask, session

from flask_notifications import Event, Notifications
from flask_notifications.consumers import PushConsumer, StoreConsumer

app = Flask(__name__)
app.config["NOTIFICATIONS_REDIS_URL"] = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "dev")  # a random one in production
notifications = Notifications(app)  # the inbox: instance/notifications.sqlite by default
celery = notifications.celery  # the worker: celery -A app:celery worker
redis = notifications.redis

inbox = notifications.create_hub("Inbox")
inbox.register_consumer(PushConsumer(redis, inbox.hub_id))  # live, to open streams
inbox.register_consumer(StoreConsumer())  # kept, in the database


@notifications.identity_loader
def current_user_id():
    return session.get("user")  # None: anonymous


@app.get("/login/<name>")
def login(name):
    session["user"] = name  # stands in for your real login view
    return {"user": name}


@app.post("/comment")
def comment():
    event = Event(
        None, "comment", "New comment", "Nice post!", sender=session.get("user", ""),
        recipients=["alice", "carol"], icon="/static/comment.png", post_id=12,
    )  # fmt: skip
    return {"event_id": notifications.send(event)["event_id"]}
