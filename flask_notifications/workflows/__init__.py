"""Notification workflows: work that happens later, on durable timers.

- :mod:`~flask_notifications.workflows.timers`: durable timers in the inbox
  database, swept by every worker (the building block of the others).
- :mod:`~flask_notifications.workflows.scheduled`: ``send(event, at=...)``
  and ``send(event, delay=...)``, :meth:`~flask_notifications.Notifications.cancel`.

See :doc:`/workflows`.
"""

from __future__ import annotations

from . import scheduled, timers
from .timers import add, cancel, handler, pending, sweep

__all__ = ["add", "cancel", "handler", "pending", "scheduled", "sweep", "timers"]
