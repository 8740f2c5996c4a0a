"""Delivery records in Redis (sent event ids, the outbox, completion records,
per-recipient delivery records) and dead letters.

The same functions as :mod:`flask_notifications.delivery.records`,
:mod:`flask_notifications.delivery.dead_letters` and
:func:`~flask_notifications.delivery.sweeper.redeliver_pending`, where they
live since 0.2;
this module keeps the import path of earlier versions.
"""

from __future__ import annotations

from .delivery.dead_letters import add_dead_letter, dead_letters, replay_dead_letters
from .delivery.records import (
    claim_and_record,
    dead_letters_key,
    delivered,
    finish_pending,
    is_done,
    mark_delivered,
    mark_done,
    pending_count,
    pending_key,
    postpone_pending,
    release_event_id,
)
from .delivery.sweeper import redeliver_pending

__all__ = [
    "add_dead_letter",
    "claim_and_record",
    "dead_letters",
    "dead_letters_key",
    "delivered",
    "finish_pending",
    "is_done",
    "mark_delivered",
    "mark_done",
    "pending_count",
    "pending_key",
    "postpone_pending",
    "redeliver_pending",
    "release_event_id",
    "replay_dead_letters",
]
