from app import app, notifications

from flask_notifications import Event

with app.app_context():
    event = Event(None, "test", "This event will pass the filter", "Hello", sender="system")
    notifications.send(event.to_json())
    event = Event(None, "system", "This event will not pass the filter", "Hi", sender="system")
    notifications.send(event.to_json())
