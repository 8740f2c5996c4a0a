"""The records of one event task, in two Redis round trips.

An event task (see :mod:`flask_notifications.delivery.worker`) holds one
connection for the event and:

1. :meth:`EventRecords.begin` -- one script: which of the event's consumers
   already finished (their completion records), and the outbox records of
   the consumers that run as tasks of their own (added unless they finished
   or are already there: only those are to be enqueued);
2. :meth:`EventRecords.consumed` -- each consumer's completion record, sent
   as soon as it finished, without waiting for the reply, so the next
   consumer starts while Redis applies it;
3. :meth:`EventRecords.finish` -- the retries' outbox records, the dead
   letters and the event task's outbox record removed, in one transaction;
   then every reply read.

Commands go out on one connection in order, so Redis applies them in the
order they were sent, and a record sent before the worker died stays. A
consumer whose record had not been sent yet runs again when the event is
delivered again. On a Redis Cluster, the event's records share a hash slot
(see :mod:`~flask_notifications.delivery.records`): the connection is one to
the node that owns it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from flask import current_app

from .._redis import is_cluster
from .records import Target, dead_letters_key, done_key, pending_key, pending_member

__all__ = ["EventRecords"]

# Which consumers of the event already finished (or were handed to a retry of
# their own: an event task delivered again must not run them beside it), and
# the outbox records of the consumers of their own (added unless finished or
# already there).
_BEGIN = """
local inline = tonumber(ARGV[2])
local out = {}
for i = 1, inline do
  if redis.call('EXISTS', KEYS[i + 1]) == 1 or redis.call('ZSCORE', KEYS[1], ARGV[i + 2]) then
    out[i] = 1
  else
    out[i] = 0
  end
end
for j = 3 + inline, #ARGV do
  if redis.call('EXISTS', KEYS[j - 1]) == 0
     and redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[j]) == 1 then
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""
_BEGIN_SHA = "_fn_begin_event_sha"


class EventRecords:
    """The Redis records of one event task, on one connection held for the event.

    :param client: the app's Redis client (a :class:`redis.Redis` or a
        :class:`redis.cluster.RedisCluster`), or ``None`` (no records: every
        consumer counts as not finished, every own task is enqueued).
    :param app_key: the Flask app's key.
    :param event_id: the event's id.
    """

    def __init__(self, client: Any, app_key: str, event_id: str) -> None:
        self._client = client
        self._app_key = app_key
        self._event_id = event_id
        self._connection: Any = None
        self._replies = 0  # sent, not read yet
        self._pool: Any = None
        if client is not None:
            if is_cluster(client):  # the node that owns the event's bucket
                node = client.get_node_from_key(pending_key(event_id))
                self._pool = client.get_redis_connection(node).connection_pool
            else:
                self._pool = client.connection_pool

    def begin(
        self, inline: list[Target], own: list[Target], due: float
    ) -> tuple[list[bool], list[bool]]:
        """Start the event, in one round trip.

        :param inline: the consumers the event task runs itself.
        :param own: the consumers that run as tasks of their own.
        :param due: when to consider the own tasks lost if unfinished.
        :returns: for each inline consumer, whether it already finished (or
            was handed to a retry task of its own); for each own-task
            consumer, whether to enqueue it.
        """
        if self._client is None:
            return [False] * len(inline), [True] * len(own)
        keys = [pending_key(self._event_id)]
        keys += [done_key(name, hub_id, self._event_id) for hub_id, name in (*inline, *own)]
        args: list[Any] = [due, len(inline)]
        app_key, event_id = self._app_key, self._event_id
        # Inline consumers' members: present when a retry of their own has them.
        args += [pending_member(name, hub_id, app_key, event_id) for hub_id, name in inline]
        args += [pending_member(name, hub_id, app_key, event_id) for hub_id, name in own]
        sha = self._client.__dict__.get(_BEGIN_SHA)
        flags = None
        if sha is not None:
            try:
                flags = self._call("EVALSHA", sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:  # Redis restarted: load it again
                flags = None
        if flags is None:
            sha = self._client.__dict__[_BEGIN_SHA] = self._call("SCRIPT", "LOAD", _BEGIN)
            flags = self._call("EVALSHA", sha, len(keys), *keys, *args)
        done = [bool(flag) for flag in flags]
        return done[: len(inline)], done[len(inline) :]

    def consumed(self, task_name: str, hub_id: str, ttl: int) -> None:
        """Record that a consumer consumed the event (sent now, reply read later).

        :param task_name: the consumer's task name.
        :param hub_id: the hub.
        :param ttl: seconds to remember it.
        """
        if self._client is not None:
            key = done_key(task_name, hub_id, self._event_id)
            self._send([("SET", key, 1, "EX", ttl)])

    def finish(
        self,
        task_name: str,
        targets: Any,
        retries: list[tuple[str, str, float]],
        letters: list[str],
        extra: Sequence[tuple[Any, ...]] = (),
    ) -> None:
        """End the event task: the outbox records of the consumers retried by
        tasks of their own, the dead letters, and the event task's outbox
        record removed, in one transaction; then read every reply (the
        completion records' too).

        :param task_name: the event task's name.
        :param targets: its targets, as in its message.
        :param retries: ``(hub id, name, due)`` of consumers retried by tasks of their own.
        :param letters: dead letters (JSON), from
            :func:`~flask_notifications.delivery.dead_letters.letter`.
        :param extra: more commands of the event's for the transaction (the
            delivery log's).
        :raises redis.RedisError: if Redis refused a record or went away.
        """
        if self._client is None:
            return
        event_id, app_key = self._event_id, self._app_key
        commands: list[tuple[Any, ...]] = [("MULTI",)]
        pending = pending_key(event_id)
        for hub_id, name, due in retries:
            commands.append(("ZADD", pending, due, pending_member(name, hub_id, app_key, event_id)))
        if letters:
            limit = current_app.config["NOTIFICATIONS_DEAD_LETTERS_MAX"]
            commands.append(("LPUSH", dead_letters_key(event_id), *letters))
            commands.append(("LTRIM", dead_letters_key(event_id), 0, limit - 1))
        commands.append(("ZREM", pending, pending_member(task_name, targets, app_key, event_id)))
        commands.extend(extra)
        commands.append(("EXEC",))
        self._send(commands)
        self.close()

    def close(self) -> None:
        """Read the replies still due and give the connection back.

        :raises redis.RedisError: if Redis refused a record or went away.
        """
        if self._connection is None:
            return
        try:
            errors = []
            for _ in range(self._replies):
                try:
                    self._connection.read_response()
                except redis.exceptions.ResponseError as exc:  # read on, then raise
                    errors.append(exc)
            if errors:
                raise errors[0]
        except BaseException:
            self._drop()
            raise
        connection, self._connection, self._replies = self._connection, None, 0
        self._pool.release(connection)

    def abandon(self) -> None:
        """Give the connection back without reading the replies still due (the
        worker is stopping; what was sent stays sent)."""
        self._drop()

    def _send(self, commands: list[tuple[Any, ...]]) -> None:
        if self._connection is None:
            self._connection = self._pool.get_connection()
        try:
            self._connection.send_packed_command(self._connection.pack_commands(commands))
        except BaseException:
            self._drop()
            raise
        self._replies += len(commands)

    def _call(self, *command: Any) -> Any:
        """Send ``command`` and wait for its reply (and those still due)."""
        self._send([command])
        try:
            replies = [self._read() for _ in range(self._replies)]
        finally:
            self._replies = 0
        reply = replies[-1]
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _read(self) -> Any:
        try:
            return self._connection.read_response()
        except redis.exceptions.ResponseError as exc:
            return exc
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        connection, self._connection, self._replies = self._connection, None, 0
        if connection is not None:
            connection.disconnect()
            self._pool.release(connection)
