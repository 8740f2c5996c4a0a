"""Flask-Notifications: real-time, per-user notifications for Flask.

Public names: ``Notifications``, ``Event``, ``EventHub``, ``EventFilter``,
``current_notifications`` and the errors of :mod:`flask_notifications.errors`.
"""

from .errors import (
    ConfigurationError,
    CriticalCategoryError,
    EventTooLargeError,
    InvalidEventError,
    InvalidMessageError,
    InvalidQueryError,
    InvalidScheduleError,
    InvalidThrottleError,
    MailRejected,
    MailServerUnavailable,
    NotificationsError,
    NotificationsUnavailable,
    PushEndpointRefused,
    PushRejected,
    PushServiceUnavailable,
    PushSubscriptionConflict,
)
from .event import Event
from .event_filter import EventFilter
from .event_hub import EventHub, current_notifications
from .extension import Notifications

__version__ = "0.2.0.dev0"

__all__ = [
    "ConfigurationError",
    "CriticalCategoryError",
    "Event",
    "EventFilter",
    "EventHub",
    "EventTooLargeError",
    "InvalidEventError",
    "InvalidMessageError",
    "InvalidQueryError",
    "InvalidScheduleError",
    "InvalidThrottleError",
    "MailRejected",
    "MailServerUnavailable",
    "Notifications",
    "NotificationsError",
    "NotificationsUnavailable",
    "PushEndpointRefused",
    "PushRejected",
    "PushServiceUnavailable",
    "PushSubscriptionConflict",
    "__version__",
    "current_notifications",
]
