"""0.1 module path (an alias) of
:class:`~flask_notifications.event_filter.Not`."""

from ..event_filter import Not

__all__ = ["Not"]
