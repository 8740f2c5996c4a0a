"""0.1 module path (an alias) of
:class:`~flask_notifications.stream.notifier.SseNotifier`."""

from ...stream.notifier import SseNotifier

__all__ = ["SseNotifier"]
