"""0.1 module path (an alias) of
:class:`~flask_notifications.consumers.push_consumer.PushConsumer`."""

from ..push_consumer import PushConsumer

__all__ = ["PushConsumer"]
