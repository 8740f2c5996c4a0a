"""0.1 module path (an alias) of
:class:`~flask_notifications.consumers.flaskemail_consumer.FlaskEmailConsumer`."""

from ..flaskemail_consumer import FlaskEmailConsumer

__all__ = ["FlaskEmailConsumer"]
