"""Web Push: browsers' subscriptions, VAPID keys, the service worker and its HTTP API.

The consumer that sends the notifications is
:class:`~flask_notifications.consumers.WebPushConsumer`; see :doc:`/webpush`.
"""

from ._ssrf import MAIN_PUSH_SERVICES
from .keys import generate_vapid_keys, public_key_from_config, vapid_from_config
from .store import PushSubscription, PushSubscriptions, parse_subscription

__all__ = [
    "MAIN_PUSH_SERVICES",
    "PushSubscription",
    "PushSubscriptions",
    "generate_vapid_keys",
    "parse_subscription",
    "public_key_from_config",
    "vapid_from_config",
]
