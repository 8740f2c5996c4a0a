import os

from flask import Flask, session

from flask_notifications import Event, Notifications
from flask_notifications.consumers import PushConsumer
from flask_notifications.filters import WithEventType

app = Flask(__name__)
app.config["NOTIFICATIONS_REDIS_URL"] = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "dev")  # a random one in production
notifications = Notifications(app)
celery = notifications.celery  # the worker: celery -A app:celery worker
redis = notifications.redis

inbox = notifications.create_hub("Inbox")  # private: the default
inbox.filter_by(WithEventType("message"))
inbox.register_consumer(PushConsumer(redis, inbox.hub_id))

news = notifications.create_hub("News", public=True)  # anonymous clients too
news.filter_by(WithEventType("news"))
news.register_consumer(PushConsumer(redis, news.hub_id))

admin = notifications.create_hub("Admin")
admin.filter_by(WithEventType("alert"))
admin.register_consumer(PushConsumer(redis, admin.hub_id))


@notifications.identity_loader
def current_user_id():
    return session.get("user")  # None: anonymous


@notifications.stream_authorizer
def may_stream(identity, hub_id):
    return hub_id != admin.hub_id or identity == "root"


@app.get("/login/<name>")
def login(name):
    session["user"] = name  # stands in for your real login view
    return {"user": name}


@app.post("/message/<recipient>")
def message(recipient):
    sender = session.get("user", "")
    event = Event(None, "message", "Hi", "Lunch?", sender=sender, recipients=[recipient])
    return {"event_id": notifications.send(event)["event_id"]}


@app.post("/news")
def publish_news():
    event = Event(None, "news", "Release 2.0", "Out today")  # no recipients: everyone
    return {"event_id": notifications.send(event)["event_id"]}
