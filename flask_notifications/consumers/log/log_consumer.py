"""0.1 module path (an alias) of
:class:`~flask_notifications.consumers.log_consumer.LogConsumer`."""

from ..log_consumer import LogConsumer

__all__ = ["LogConsumer"]
