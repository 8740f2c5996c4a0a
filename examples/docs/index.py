import os

from flask import Flask

from flask_notifications import Event, Notifications
from flask_notifications.filters import WithEventType

app = Flask(__name__)
app.config["NOTIFICATIONS_REDIS_URL"] = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
notifications = Notifications(app=app)
celery = notifications.celery  # the worker: celery -A app:celery worker

hub = notifications.create_hub("Comments")
hub.filter_by(WithEventType("comment"))


@hub.register_consumer(celery_task_name="app.print_comment")
def print_comment(event, *args, **kwargs):
    print(event["title"])


@app.post("/comments")
def comment():
    event = notifications.send(Event(None, "comment", "New comment", "Nice post!"))
    return {"event_id": event["event_id"]}
