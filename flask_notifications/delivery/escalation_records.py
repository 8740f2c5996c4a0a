"""The records of escalations (a consumer run later for an event's unread
recipients, see :mod:`flask_notifications.workflows.escalation`): claimed once,
with its task in the outbox, in the event's bucket like its other records
(:mod:`~flask_notifications.delivery.records`)."""

from __future__ import annotations

import json

import redis

from .records import cached_script, event_key, pending_key, pending_member, redis_client


def escalation_key(task_name: str, hub_id: str, event_id: str) -> str:
    """The record of a consumer run later for an event's unread recipients (see
    :mod:`flask_notifications.workflows.escalation`): the event as that
    consumer gets it (narrowed to them), which a redelivery sends instead of
    the event as first sent.

    :param task_name: the consumer's task name.
    :param hub_id: the hub.
    :param event_id: the event's id.
    """
    return event_key(event_id, "escalated", hub_id, task_name, event_id)


# Claim one consumer's later run of an event (its escalation) and record its
# task in the outbox, in one command.
_CLAIM_ESCALATION = """
if not redis.call('SET', KEYS[1], ARGV[3], 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[4])
return 1
"""


def claim_escalation(
    task_name: str, hub_id: str, app_key: str, event_json: str, ttl: int, due: float
) -> bool:
    """Claim the later run of one consumer on an event (an escalation) and
    record its task in the outbox, in one round trip: ``False`` when it was
    claimed before (the run was enqueued already, or its outbox record will
    enqueue it).

    :param task_name: the consumer's task name.
    :param hub_id: the hub.
    :param app_key: the Flask app's key.
    :param event_json: the event as the consumer gets it (its ``event_id`` is
        the original event's).
    :param ttl: seconds to remember the claim (``NOTIFICATIONS_DEDUP_TTL``).
    :param due: when to consider the task lost if unfinished (epoch seconds).
    """
    client = redis_client()
    if client is None:
        return True
    event_id = json.loads(event_json)["event_id"]
    script = cached_script(client, "_fn_claim_escalation", _CLAIM_ESCALATION)
    keys = [escalation_key(task_name, hub_id, event_id), pending_key(event_id)]
    member = pending_member(task_name, hub_id, app_key, event_id)
    return bool(script(keys=keys, args=[ttl, due, event_json, member]))


def release_escalation(task_name: str, hub_id: str, app_key: str, event_id: str) -> None:
    """Undo :func:`claim_escalation` (its task could not be enqueued).

    :param task_name: the consumer's task name.
    :param hub_id: the hub.
    :param app_key: the Flask app's key.
    :param event_id: the event's id.
    """
    client = redis_client()
    if client is not None:
        try:
            client.delete(escalation_key(task_name, hub_id, event_id))
            client.zrem(pending_key(event_id), pending_member(task_name, hub_id, app_key, event_id))
        except redis.RedisError:
            pass  # Redis is down: the timer runs again and claims again once it is back
