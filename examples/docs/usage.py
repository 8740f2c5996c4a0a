import os
from datetime import datetime

from flask import Flask

from flask_notifications import Notifications
from flask_notifications.consumers.push_consumer import PushConsumer
from flask_notifications.filters import Not
from flask_notifications.filters.before_date import BeforeDate
from flask_notifications.filters.with_event_type import WithEventType

app = Flask(__name__)
app.config["NOTIFICATIONS_REDIS_URL"] = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
notifications = Notifications(app=app)
celery = notifications.celery  # what `celery -A app:celery worker` runs
redis = notifications.redis  # the Redis client of the extension

# A hub, found by its label in every process.
test_hub = notifications.create_hub("TestHub")
test_hub_id = test_hub.hub_id

# Its filter: the "test" events sent from now on.
now = datetime.now()
test_hub.filter_by(WithEventType("test") & Not(BeforeDate(now)))


# Its consumers: a function that appends each event to a file, and a push consumer.
@test_hub.register_consumer(celery_task_name="app.write_to_file")
def write_to_file(event, *args, **kwargs):
    with open("events.log", "a") as f:
        f.write(event.to_json() + "\n")


push_consumer = PushConsumer(redis, test_hub_id)
test_hub.register_consumer(push_consumer)
