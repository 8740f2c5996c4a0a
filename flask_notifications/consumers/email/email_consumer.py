"""0.1 module path (an alias) of
:class:`~flask_notifications.consumers.EmailConsumer`."""

from .._email import EmailConsumer

__all__ = ["EmailConsumer"]
