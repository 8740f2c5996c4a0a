"""0.1 module path (an alias) of
:class:`~flask_notifications.pubsub.backend.Backend`."""

from ..pubsub.backend import Backend

__all__ = ["Backend"]
