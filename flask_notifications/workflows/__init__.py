"""Notification workflows: work that happens later, on durable timers.

- :mod:`~flask_notifications.workflows.timers`: durable timers in the inbox
  database, swept by every worker (the building block of the others).
- :mod:`~flask_notifications.workflows.scheduled`: ``send(event, at=...)``
  and ``send(event, delay=...)``, :meth:`~flask_notifications.Notifications.cancel`.
- :mod:`~flask_notifications.workflows.throttle`: ``hub.throttle(limit, per)``,
  at most ``limit`` deliveries per window and recipient, the rest as one summary.
- :mod:`~flask_notifications.workflows.escalation`: consumers registered with
  ``if_unread_after=``, run for the recipients who have not read the event.

See :doc:`/workflows`.
"""

from __future__ import annotations

from . import escalation, scheduled, throttle, timers
from .timers import add, cancel, handler, pending, sweep

__all__ = [
    "add", "cancel", "escalation", "handler", "pending", "scheduled", "sweep", "throttle", "timers",
]  # fmt: skip
