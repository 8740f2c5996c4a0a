"""Dead-letter timers: what a timer that failed for the last time keeps, and
the task that runs its handler once more (enqueued by ``flask notifications
replay``); see :mod:`flask_notifications.workflows.timers`."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from .._state import get_state
from .timers import _HANDLERS

if TYPE_CHECKING:
    from ..delivery.tasks import ConsumerTask

__all__ = ["letter", "run_timer"]

logger = logging.getLogger("flask_notifications")


def letter(row: Any) -> str:
    """The dead letter's "event": the timer, with the event id its payload names."""
    payload = json.loads(row.payload)
    event_id = payload.get("event_id") if isinstance(payload, dict) else None
    return json.dumps({"event_id": event_id, "key": row.key, "kind": row.kind, "payload": payload})


def run_timer(task: ConsumerTask, letter_json: str, kind: str, app_key: str) -> None:
    """Run a dead-letter timer's handler once more (the body of
    :data:`~flask_notifications.workflows.timers.TIMER_TASK`, enqueued by
    ``flask notifications replay``).

    :param task: the task.
    :param letter_json: the timer, as the dead letter keeps it.
    :param kind: its kind.
    :param app_key: the key of the app it belongs to.
    """
    from ..delivery.dead_letters import add_dead_letter

    try:
        payload = json.loads(letter_json)["payload"]
        func = _HANDLERS.get(kind)
        if func is None:
            raise LookupError(f"no handler for timer kind {kind!r} in this process")
        func(get_state().extension, payload)
    except Exception as exc:  # noqa: BLE001 - back to the dead letters
        logger.error("replayed timer of kind %s failed again: %s", kind, exc, exc_info=exc)
        add_dead_letter(task.name, kind, app_key, letter_json, exc)
