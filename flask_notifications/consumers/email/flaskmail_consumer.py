"""0.1 module path (an alias) of
:class:`~flask_notifications.consumers.flaskmail_consumer.FlaskMailConsumer`."""

from ..flaskmail_consumer import FlaskMailConsumer

__all__ = ["FlaskMailConsumer"]
