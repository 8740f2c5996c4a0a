import os

from flask import Flask, session

from flask_notifications import Event, Notifications
from flask_notifications.consumers import LogConsumer, PushConsumer
from flask_notifications.filters import WithEventType

app = Flask(__name__)
app.config["NOTIFICATIONS_REDIS_URL"] = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "dev")  # a random one in production
notifications = Notifications(app)  # Redis and the Celery broker: NOTIFICATIONS_REDIS_URL
celery = notifications.celery  # the worker: celery -A app:celery worker

hub = notifications.create_hub("Messages")  # private: streamed to identified users only
hub.filter_by(WithEventType("message"))
hub.register_consumer(PushConsumer(notifications.redis, hub.hub_id))
hub.register_consumer(LogConsumer("messages.log"))


@notifications.identity_loader
def current_user_id():
    return session.get("user")  # None: anonymous


@app.get("/login/<name>")
def login(name):
    session["user"] = name  # stands in for your real login view
    return {"user": name}


@app.post("/hello/<user>")
def hello(user):
    event = notifications.send(Event(None, "message", "Hi", "Lunch?", recipients=[user]))
    return {"event_id": event["event_id"]}
