"""Delivery bookkeeping in Redis: sent event ids, completed consumers, dead letters.

- ``send()`` records each event id for ``NOTIFICATIONS_DEDUP_TTL`` seconds and
  ignores an id it has already sent.
- A consumer task records ``(consumer, hub, event id)`` after ``consume``
  succeeds: a redelivered task whose first run finished does not run again,
  while one whose run died half way does.
- A consumer that fails for good leaves a dead letter, which an operator can
  list and replay (``flask notifications replay``).

These need the default Redis client (``init_app(broker=...)`` a
:class:`redis.Redis`); with another broker client they are skipped.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from ._state import get_state

#: Redis list of dead letters (JSON objects), newest first.
DEAD_LETTERS_KEY = "flask_notifications:dead_letters"
_SENT = "flask_notifications:sent:"
_DONE = "flask_notifications:done:"


def _client() -> redis.Redis | None:
    client = get_state().redis
    return client if isinstance(client, redis.Redis) else None


def claim_event_id(event_id: str, ttl: int) -> bool:
    """Record that ``event_id`` is being sent; ``False`` if it already was.

    :param event_id: the event's id.
    :param ttl: seconds to remember it.
    """
    client = _client()
    if client is None:
        return True
    return bool(client.set(_SENT + event_id, 1, nx=True, ex=ttl))


def release_event_id(event_id: str) -> None:
    """Forget ``event_id`` (its send failed), so the caller may send it again.

    :param event_id: the event's id.
    """
    client = _client()
    if client is not None:
        try:
            client.delete(_SENT + event_id)
        except redis.RedisError:
            pass  # Redis is down: the key expires anyway


def _done_key(task_name: str, hub_id: str, event_id: str) -> str:
    return f"{_DONE}{hub_id}:{task_name}:{event_id}"


def is_done(task_name: str, hub_id: str, event_id: str) -> bool:
    """Whether this consumer already consumed this event.

    :param task_name: the consumer's task name.
    :param hub_id: the hub.
    :param event_id: the event's id.
    """
    client = _client()
    return client is not None and bool(client.exists(_done_key(task_name, hub_id, event_id)))


def mark_done(task_name: str, hub_id: str, event_id: str, ttl: int) -> None:
    """Record that this consumer consumed this event.

    :param task_name: the consumer's task name.
    :param hub_id: the hub.
    :param event_id: the event's id.
    :param ttl: seconds to remember it.
    """
    client = _client()
    if client is not None:
        client.set(_done_key(task_name, hub_id, event_id), 1, ex=ttl)


def add_dead_letter(
    task_name: str, hub_id: str, app_name: str, event_json: str, error: BaseException
) -> None:
    """Keep a task that failed for good, for an operator to inspect and replay.

    :param task_name: the consumer's task name.
    :param hub_id: the hub.
    :param app_name: the Flask app the task ran in.
    :param event_json: the event.
    :param error: the last exception.
    """
    client = _client()
    if client is None:
        return
    letter = {
        "task": task_name,
        "hub_id": hub_id,
        "app": app_name,
        "event": event_json,
        "error": f"{type(error).__name__}: {error}"[:2000],
        "failed_at": time.time(),
    }
    client.lpush(DEAD_LETTERS_KEY, json.dumps(letter))


def dead_letters() -> list[dict[str, Any]]:
    """The dead letters, newest first."""
    client = _client()
    if client is None:
        return []
    return [json.loads(raw) for raw in client.lrange(DEAD_LETTERS_KEY, 0, -1)]


def replay_dead_letters() -> int:
    """Enqueue every dead letter again (oldest first) and remove it.

    :returns: how many were replayed.
    """
    client = _client()
    if client is None:
        return 0
    tasks = get_state().celery.tasks
    count = 0
    while (raw := client.rpop(DEAD_LETTERS_KEY)) is not None:
        letter = json.loads(raw)
        task = tasks.get(letter["task"])
        if task is None:  # unknown here: keep it for a process that knows it
            client.rpush(DEAD_LETTERS_KEY, raw)
            break
        task.apply_async((letter["event"], letter["hub_id"], letter["app"]), serializer="json")
        count += 1
    return count
