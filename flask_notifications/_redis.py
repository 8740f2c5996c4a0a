"""The library's own Redis clients, on pools it sizes itself.

A client handed in as ``init_app(broker=StrictRedis(...))`` keeps redis-py's
default pool, which raises "Too many connections" once full (redis-py 6 and
later). The library never works through that pool: it builds its own
blocking pool from the client's connection settings (same host, socket,
password, TLS, database, decoding), so a burst of streams or tasks waits for
a connection instead of failing, and the user's own pool stays theirs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

# Objects redis-py 7+ puts in a pool's connection settings that belong to that
# pool (its maintenance-notification handlers): the new pool makes its own.
_POOL_OWN = frozenset(
    {"maint_notifications_pool_handler", "oss_cluster_maint_notifications_handler"}
)


def blocking_client(url: str, config: Mapping[str, Any]) -> redis.Redis:
    """A Redis client for ``url`` on a blocking pool sized by the settings.

    :param url: a ``redis://``, ``rediss://`` or ``unix://`` URL.
    :param config: the app's configuration (``NOTIFICATIONS_REDIS_MAX_CONNECTIONS``,
        ``NOTIFICATIONS_REDIS_POOL_TIMEOUT``).
    """
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=config["NOTIFICATIONS_REDIS_MAX_CONNECTIONS"],
        timeout=config["NOTIFICATIONS_REDIS_POOL_TIMEOUT"],
    )
    return redis.Redis(connection_pool=pool)


def own_client(broker: Any, config: Mapping[str, Any]) -> Any:
    """The client the library uses for a ``broker`` given to ``init_app``.

    A :class:`redis.Redis` on a plain connection pool gets a twin on a
    blocking pool of the library's size, with the same connection settings.
    Anything else (another broker's client, a client on a custom pool) is
    used as given.

    :param broker: the object passed as ``init_app(broker=...)``.
    :param config: the app's configuration.
    """
    if not isinstance(broker, redis.Redis):
        return broker
    pool = broker.connection_pool
    if type(pool) not in (redis.ConnectionPool, redis.BlockingConnectionPool):
        return broker  # e.g. a Sentinel pool: it finds its server itself
    settings = {k: v for k, v in pool.connection_kwargs.items() if k not in _POOL_OWN}
    own = redis.BlockingConnectionPool(
        connection_class=pool.connection_class,
        max_connections=config["NOTIFICATIONS_REDIS_MAX_CONNECTIONS"],
        timeout=config["NOTIFICATIONS_REDIS_POOL_TIMEOUT"],
        **settings,
    )
    return redis.Redis(connection_pool=own)
