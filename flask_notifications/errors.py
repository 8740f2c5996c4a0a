"""Exceptions raised by Flask-Notifications.

Every error caused by bad input is a :class:`ValueError` subclass, so callers
that already guard against ``ValueError`` keep working.
"""

from __future__ import annotations


class NotificationsError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidEventError(NotificationsError, ValueError):
    """An event (or its JSON form) is malformed.

    :param field: name of the offending field, or ``None`` when the problem is
        the event as a whole (for example malformed JSON).
    :param message: what is wrong with it.
    """

    def __init__(self, field: str | None, message: str) -> None:
        self.field = field
        text = f"{field}: {message}" if field else message
        super().__init__(f"invalid event: {text}")


class EventTooLargeError(InvalidEventError):
    """The JSON form of an event is bigger than ``NOTIFICATIONS_MAX_EVENT_BYTES``."""


class InvalidMessageError(InvalidEventError):
    """An event's ``i18n`` field (message ids and parameters to translate for
    each recipient) is malformed: a placeholder its parameters do not give, a
    positional placeholder, a parameter that is not a JSON scalar... Raised by
    :meth:`Notifications.send <flask_notifications.Notifications.send>`."""

    def __init__(self, message: str) -> None:
        super().__init__("i18n", message)


class InvalidQueryError(NotificationsError, ValueError):
    """A bad argument to the inbox or preferences API (a user id, a page,
    ``since``...); the HTTP API answers it with 400."""


class InvalidScheduleError(NotificationsError, ValueError):
    """A bad ``at=`` or ``delay=`` given to :meth:`Notifications.send()
    <flask_notifications.Notifications.send>`: both given, a naive datetime,
    or a value of the wrong type."""


class CriticalCategoryError(InvalidQueryError):
    """A category listed in ``NOTIFICATIONS_CRITICAL_CATEGORIES`` cannot be
    turned off (the HTTP API answers it with 400)."""


class InvalidThrottleError(NotificationsError, ValueError):
    """A bad ``limit`` or ``per`` given to :meth:`EventHub.throttle()
    <flask_notifications.event_hub.EventHub.throttle>`."""


class NotificationsUnavailable(NotificationsError, ConnectionError):
    """Redis or the Celery broker did not answer within ``NOTIFICATIONS_SEND_TIMEOUT``:
    the event was not (or not completely) enqueued. Sending it again is safe."""


class ConfigurationError(NotificationsError, ValueError):
    """A ``NOTIFICATIONS_*`` (or ``BACKEND``) configuration value is wrong."""


class MailServerUnavailable(NotificationsError, ConnectionError):
    """The SMTP server could not be reached, timed out or answered with a
    temporary (4xx) error: the e-mail consumers retry."""


class MailRejected(NotificationsError, ValueError):
    """The SMTP server refused a message for good (a 5xx answer: unknown
    recipient, failed authentication...): retrying would not help, so the
    task becomes a dead letter."""


class PushServiceUnavailable(NotificationsError, ConnectionError):
    """A Web Push service could not take a notification now: it answered 5xx or
    429, or could not be reached. Transient: the consumer's task retries it
    (it is a :class:`ConnectionError`, in :attr:`Consumer.retry_for
    <flask_notifications.consumers.consumer.Consumer.retry_for>`)."""

    #: Seconds the service asked to wait (its ``Retry-After``), or ``None``:
    #: the retry waits at least this long.
    retry_after: float | None = None


class PushRejected(NotificationsError, ValueError):
    """A Web Push service refused a notification for good: a 4xx answer other
    than 404 and 410 (which delete the subscription instead), for example 403
    when the VAPID keys do not match the ones the browser subscribed with, or
    413 for a payload too large. Retrying would not help."""


class PushEndpointRefused(InvalidQueryError):
    """A Web Push endpoint the workers must not send to: not an ``https`` URL,
    a host outside ``NOTIFICATIONS_WEBPUSH_ALLOWED_HOSTS``, or a host whose
    addresses are not all public (loopback, private, link-local, multicast,
    reserved...), unless they are in ``NOTIFICATIONS_WEBPUSH_ALLOWED_NETWORKS``.
    Raised when a subscription is stored (the HTTP API answers 400) and when a
    push is about to be sent (the subscription is then deleted)."""


class PushSubscriptionConflict(InvalidQueryError):
    """A push subscription's endpoint is stored for another user with other
    keys: it stays that user's (the HTTP API answers 409). An endpoint moves
    to another user only when the same browser (same ``p256dh`` and ``auth``
    keys) subscribes again."""
