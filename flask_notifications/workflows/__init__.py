"""Notification workflows: work that happens later, on durable timers.

- :mod:`~flask_notifications.workflows.timers`: durable timers in the inbox
  database, swept by every worker (the building block of the others).

See :doc:`/workflows`.
"""

from __future__ import annotations

from . import timers
from .timers import add, cancel, handler, pending, sweep

__all__ = ["add", "cancel", "handler", "pending", "sweep", "timers"]
