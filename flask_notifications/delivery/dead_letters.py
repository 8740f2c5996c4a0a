"""Dead letters: the consumers that failed for good, kept for an operator.

A consumer that raised an exception outside its ``retry_for``, or ran out of
retries, leaves a dead letter in the Redis list of :func:`dead_letters_key`
(bounded by ``NOTIFICATIONS_DEAD_LETTERS_MAX``). ``flask notifications
dead-letters`` lists them and ``flask notifications replay`` enqueues each
consumer's task again (:func:`replay_dead_letters`).
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask import current_app

from .._state import get_state
from .._text import printable
from .records import dead_letters_key, dead_letters_keys, redis_client

__all__ = ["add_dead_letter", "dead_letters", "dead_letters_key", "letter", "replay_dead_letters"]


def letter(task_name: str, hub_id: str, app_key: str, event_json: str, error: BaseException) -> str:
    """The JSON of a dead letter.

    :param task_name: the consumer's task name.
    :param hub_id: the hub.
    :param app_key: the key of the Flask app the consumer ran in.
    :param event_json: the event.
    :param error: the last exception.
    """
    return json.dumps(
        {
            "task": task_name,
            "hub_id": hub_id,
            "app": app_key,
            "event": event_json,
            "error": printable(f"{type(error).__name__}: {error}", 2000),
            "failed_at": time.time(),
        }
    )


def add_dead_letter(
    task_name: str, hub_id: str, app_key: str, event_json: str, error: BaseException
) -> None:
    """Keep a consumer that failed for good, for an operator to inspect and replay.

    :param task_name: the consumer's task name.
    :param hub_id: the hub.
    :param app_key: the key of the Flask app the consumer ran in.
    :param event_json: the event.
    :param error: the last exception.
    """
    client = redis_client()
    if client is None:
        return
    key = dead_letters_key(_event_id(event_json))
    pipe = client.pipeline(transaction=True)
    pipe.lpush(key, letter(task_name, hub_id, app_key, event_json, error))
    # Bounded: the oldest go once NOTIFICATIONS_DEAD_LETTERS_MAX are kept.
    pipe.ltrim(key, 0, current_app.config["NOTIFICATIONS_DEAD_LETTERS_MAX"] - 1)
    pipe.execute()


def dead_letters() -> list[dict[str, Any]]:
    """The dead letters, newest first."""
    client = redis_client()
    if client is None:
        return []
    letters = [json.loads(raw) for key in dead_letters_keys() for raw in client.lrange(key, 0, -1)]
    if len(dead_letters_keys()) > 1:  # a Redis Cluster's buckets, merged
        letters.sort(key=lambda item: item.get("failed_at", 0), reverse=True)
    return letters


def replay_dead_letters() -> int:
    """Enqueue every dead letter again (oldest first) and remove it: each runs
    its consumer's own task.

    :returns: how many were replayed.
    """
    client = redis_client()
    if client is None:
        return 0
    tasks = get_state().celery.tasks
    count = 0
    for key in dead_letters_keys():  # one per bucket on a Redis Cluster
        while (raw := client.rpop(key)) is not None:
            item = json.loads(raw)
            task = tasks.get(item["task"])
            if task is None:  # unknown here: keep it for a process that knows it
                client.rpush(key, raw)
                break
            task.apply_async((item["event"], item["hub_id"], item["app"]), serializer="json")
            count += 1
    metrics = get_state().metrics
    if metrics is not None and count:
        metrics.dead_letters_replayed.inc(count)
    return count


def _event_id(event_json: str) -> str | None:
    """The id of the event of a dead letter (its bucket on a Redis Cluster)."""
    try:
        event_id = json.loads(event_json).get("event_id")
    except (ValueError, AttributeError):
        return None
    return event_id if isinstance(event_id, str) else None
