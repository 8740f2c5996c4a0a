"""The library's own Redis clients, on pools it sizes itself.

``NOTIFICATIONS_REDIS_URL`` names one Redis server (``redis://``,
``rediss://``, ``unix://``), a Sentinel-managed master
(``redis+sentinel://``) or a Redis Cluster (``redis+cluster://``); see
:func:`blocking_client`. Every client the library builds waits for a free
connection when its pool is full, instead of failing.

A client handed in as ``init_app(broker=StrictRedis(...))`` keeps redis-py's
default pool, which raises "Too many connections" once full (redis-py 6 and
later). The library never works through that pool: it builds its own
blocking pool from the client's connection settings (same host, socket,
password, TLS, database, decoding), so a burst of streams or tasks waits for
a connection instead of failing, and the user's own pool stays theirs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel, SentinelConnectionPool

from .errors import ConfigurationError

# Objects redis-py 7+ puts in a pool's connection settings that belong to that
# pool (its maintenance-notification handlers): the new pool makes its own.
_POOL_OWN = frozenset(
    {"maint_notifications_pool_handler", "oss_cluster_maint_notifications_handler"}
)
logger = logging.getLogger("flask_notifications")
_SETTING = "NOTIFICATIONS_REDIS_URL"
#: Seconds a Sentinel may take to answer which server is the master.
SENTINEL_TIMEOUT = 1.0


class RedisURL(NamedTuple):
    """``NOTIFICATIONS_REDIS_URL`` taken apart (see :func:`parse_redis_url`)."""

    #: ``"redis"`` (one server, any URL redis-py takes), ``"sentinel"`` or ``"cluster"``.
    kind: str
    #: ``(host, port)`` of each Sentinel, or of each Cluster node given.
    nodes: list[tuple[str, int]]
    #: The Sentinel service (master) name; ``""`` otherwise.
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    #: The Sentinels' own password (``?sentinel_password=``), if they need one.
    sentinel_password: str | None = None
    #: TLS to the Redis servers (``rediss+sentinel://``, ``rediss+cluster://``).
    tls: bool = False


def parse_redis_url(url: object) -> RedisURL:
    """Take ``NOTIFICATIONS_REDIS_URL`` apart.

    - ``redis://``, ``rediss://``, ``unix://``: one server (``nodes`` is empty;
      redis-py parses the URL itself);
    - ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``
      (``rediss+sentinel://`` for TLS to the master; ``?sentinel_password=``
      when the Sentinels need a password of their own);
    - ``redis+cluster://[[user]:password@]host:port[,host:port...]``
      (``rediss+cluster://`` for TLS).

    :param url: the setting's value.
    :raises ConfigurationError: naming the setting, for anything else.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"{_SETTING} must be a Redis URL, not {url!r}")
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        return RedisURL("redis", [])
    kinds = {"redis+sentinel": "sentinel", "rediss+sentinel": "sentinel"}
    kinds.update({"redis+cluster": "cluster", "rediss+cluster": "cluster"})
    if scheme not in kinds:
        raise ConfigurationError(
            f"{_SETTING} {_safe(url)!r}: unknown scheme {scheme!r} (redis://, rediss://, "
            "unix://, redis+sentinel:// or redis+cluster://)"
        )
    kind = kinds[scheme]
    rest = url.split("://", 1)[1]
    credentials, _, location = rest.rpartition("@")
    parts = urlsplit("//" + location)
    username = password = None
    if credentials:
        user, _, secret = credentials.partition(":")
        username, password = (unquote(user) or None), (unquote(secret) or None)
    default_port = 26379 if kind == "sentinel" else 6379
    nodes = [_host_port(url, item, default_port) for item in parts.netloc.split(",")]
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - ({"sentinel_password"} if kind == "sentinel" else set())
    if unknown:
        raise ConfigurationError(
            f"{_SETTING} {_safe(url)!r}: unknown query argument(s) {', '.join(sorted(unknown))}"
        )
    path = [p for p in parts.path.split("/") if p]
    if kind == "cluster":
        if path not in ([], ["0"]):
            raise ConfigurationError(
                f"{_SETTING} {_safe(url)!r}: a Redis Cluster has database 0 only "
                "(redis+cluster://host:port[,host:port...])"
            )
        return RedisURL(
            kind, nodes, username=username, password=password, tls=scheme.startswith("rediss")
        )
    if not path or len(path) > 2:
        raise ConfigurationError(
            f"{_SETTING} {_safe(url)!r}: name the master "
            "(redis+sentinel://host:port[,host:port...]/service_name[/db])"
        )
    db = path[1] if len(path) == 2 else "0"
    if not db.isascii() or not db.isdigit():
        raise ConfigurationError(f"{_SETTING} {_safe(url)!r}: the database must be a number")
    sentinel_password = query.get("sentinel_password", [None])[0] or None
    return RedisURL(
        kind, nodes, unquote(path[0]), int(db), username, password, sentinel_password,
        tls=scheme.startswith("rediss"),
    )  # fmt: skip


def _host_port(url: str, item: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit("//" + item)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number, or out of range
        host, port = None, None
    if not host:
        raise ConfigurationError(f"{_SETTING} {_safe(url)!r}: {item!r} is not a host:port pair")
    return host, port or default_port


def _safe(url: str) -> str:
    """``url`` without its password, for error messages."""
    scheme, _, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}://{user}:***@{location}"


class _BlockingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """A Sentinel-managed pool that waits for a free connection when full."""


def blocking_client(url: str, config: Mapping[str, Any]) -> Any:
    """A client for ``url`` on blocking pools sized by the settings.

    One server gives a :class:`redis.Redis`; a ``redis+sentinel://`` URL a
    :class:`redis.Redis` whose pool asks the Sentinels for the master (after
    a failover, new connections go to the new master); a ``redis+cluster://``
    URL a :class:`redis.cluster.RedisCluster`, with one blocking pool per node.

    :param url: ``NOTIFICATIONS_REDIS_URL`` (see :func:`parse_redis_url`).
    :param config: the app's configuration (``NOTIFICATIONS_REDIS_MAX_CONNECTIONS``,
        ``NOTIFICATIONS_REDIS_POOL_TIMEOUT``).
    :raises ConfigurationError: for a URL that names no Redis.
    """
    parsed = parse_redis_url(url)
    size = config["NOTIFICATIONS_REDIS_MAX_CONNECTIONS"]
    wait = config["NOTIFICATIONS_REDIS_POOL_TIMEOUT"]
    if parsed.kind == "sentinel":
        sentinel = Sentinel(
            parsed.nodes,
            sentinel_kwargs={
                "password": parsed.sentinel_password,
                "socket_timeout": SENTINEL_TIMEOUT,
                "socket_connect_timeout": SENTINEL_TIMEOUT,
            },
        )
        client = sentinel.master_for(
            parsed.service,
            connection_pool_class=_BlockingSentinelPool,
            max_connections=size,
            timeout=wait,
            db=parsed.db,
            username=parsed.username,
            password=parsed.password,
            ssl=parsed.tls,
        )
        client.sentinel = sentinel  # type: ignore[attr-defined]  # kept for tests and tools
        return client
    if parsed.kind == "cluster":
        (host, port), *others = parsed.nodes
        return RedisCluster(
            url=node_url(parsed, host, port),
            startup_nodes=[ClusterNode(h, p) for h, p in others],
            connection_pool_class=redis.BlockingConnectionPool,
            max_connections=size,
            timeout=wait,
        )
    try:
        pool = redis.BlockingConnectionPool.from_url(url, max_connections=size, timeout=wait)
    except ValueError as exc:
        raise ConfigurationError(f"{_SETTING} {_safe(url)!r}: {exc}") from None
    return redis.Redis(connection_pool=pool)


def node_url(parsed: RedisURL, host: str, port: int) -> str:
    """A ``redis://`` (or ``rediss://``) URL of one server of ``parsed``, with
    its credentials.

    :param parsed: the parsed setting.
    :param host: the server's host.
    :param port: its port.
    """
    netloc = f"[{host}]" if ":" in host else host
    return f"{'rediss' if parsed.tls else 'redis'}://{_auth(parsed)}{netloc}:{port}/{parsed.db}"


def _auth(parsed: RedisURL) -> str:
    if parsed.password is None and parsed.username is None:
        return ""
    return f"{quote(parsed.username or '', safe='')}:{quote(parsed.password or '', safe='')}@"


def is_cluster(client: object) -> bool:
    """Whether ``client`` is a :class:`redis.cluster.RedisCluster`.

    :param client: a client.
    """
    return isinstance(client, RedisCluster)


def is_redis(client: object) -> bool:
    """Whether the library can keep its bookkeeping through ``client``: a
    :class:`redis.Redis` (one server, or a Sentinel-managed master) or a
    :class:`redis.cluster.RedisCluster`.

    :param client: a client.
    """
    return isinstance(client, redis.Redis | RedisCluster)


def own_client(broker: Any, config: Mapping[str, Any]) -> Any:
    """The client the library uses for a ``broker`` given to ``init_app``.

    A :class:`redis.Redis` on a plain connection pool gets a twin on a
    blocking pool of the library's size, with the same connection settings.
    Anything else (a Sentinel-managed client, a
    :class:`~redis.cluster.RedisCluster`, another broker's client, a client on
    a custom pool) is used as given.

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


def is_sentinel(client: object) -> bool:
    """Whether ``client`` is a Sentinel-managed master's client.

    :param client: a client.
    """
    pool = getattr(client, "connection_pool", None)
    return isinstance(pool, SentinelConnectionPool)


class ReplicaWait:
    """How many replicas a write waits for (Redis ``WAIT``) before it counts
    as done, so that a failover cannot lose it.

    When fewer replicas acknowledge (a replica is down, or the failover left
    the new master without one), the writes of the next :attr:`RELAX`
    seconds wait for as many as answered, instead of each paying the
    timeout; then the full number is asked again.

    :param replicas: replicas to wait for (0: no ``WAIT``).
    :param timeout: seconds one ``WAIT`` may take.
    """

    #: Seconds writes wait for fewer replicas after a ``WAIT`` fell short.
    RELAX = 10.0

    def __init__(self, replicas: int, timeout: float) -> None:
        self.replicas = replicas
        self.timeout_ms = max(1, int(timeout * 1000))
        self._fewer = replicas
        self._until = 0.0

    def target(self) -> int:
        """The number of replicas the next write waits for."""
        if self._fewer < self.replicas and time.monotonic() < self._until:
            return self._fewer
        return self.replicas

    def record(self, target: int, acknowledged: int) -> None:
        """Remember how a ``WAIT`` for ``target`` replicas went.

        :param target: what :meth:`target` returned.
        :param acknowledged: what ``WAIT`` answered.
        """
        if acknowledged < target:
            if self._fewer == self.replicas:
                logger.warning(
                    "Redis: %d of %d replicas acknowledged a write within %d ms; "
                    "waiting for %d for %gs",
                    acknowledged, target, self.timeout_ms, acknowledged, self.RELAX,
                )  # fmt: skip
            self._fewer, self._until = acknowledged, time.monotonic() + self.RELAX
        elif target == self.replicas:
            self._fewer = self.replicas


def replica_wait(config: Mapping[str, Any], client: object) -> ReplicaWait:
    """The :class:`ReplicaWait` of the settings for ``client``:
    ``NOTIFICATIONS_REDIS_WAIT_REPLICAS`` (``None``: 1 for a Sentinel-managed
    master, else 0) and ``NOTIFICATIONS_REDIS_WAIT_TIMEOUT``.

    :param config: the app's configuration.
    :param client: the library's client.
    """
    replicas = config.get("NOTIFICATIONS_REDIS_WAIT_REPLICAS")
    if replicas is None:
        replicas = 1 if is_sentinel(client) else 0
    if is_cluster(client):
        replicas = 0  # WAIT has no key: a cluster client cannot route it
    return ReplicaWait(int(replicas), float(config.get("NOTIFICATIONS_REDIS_WAIT_TIMEOUT", 0.5)))


def celery_broker(url: str) -> tuple[str, dict[str, Any]]:
    """The Celery broker URL, and the transport options it needs, for
    ``NOTIFICATIONS_REDIS_URL`` when no broker is configured: the same URL for
    one server; kombu's ``sentinel://`` transport (one URL per Sentinel, and
    ``master_name``) for a Sentinel-managed master.

    :param url: ``NOTIFICATIONS_REDIS_URL``.
    :raises ConfigurationError: for a Redis Cluster: kombu has no Redis
        Cluster transport, so the broker must be configured apart.
    """
    parsed = parse_redis_url(url)
    if parsed.kind == "redis":
        return url, {}
    if parsed.kind == "cluster":
        raise ConfigurationError(
            f"{_SETTING} is a Redis Cluster, which cannot carry the Celery queue (kombu "
            "has no Redis Cluster transport): set CELERY_BROKER_URL to a separate Redis "
            "(redis://...), Sentinel (sentinel://...;sentinel://... with the master_name "
            "transport option) or RabbitMQ (amqp://...), or pass init_app(celery=...)"
        )
    if parsed.tls:
        raise ConfigurationError(
            f"{_SETTING}: the Celery broker over TLS through Sentinel is not configured "
            "for you: set CELERY_BROKER_URL (sentinel://...), its master_name transport "
            "option and broker_use_ssl"
        )
    auth = _auth(parsed)
    sentinels = ";".join(
        f"sentinel://{auth}{f'[{h}]' if ':' in h else h}:{p}/{parsed.db}" for h, p in parsed.nodes
    )
    options: dict[str, Any] = {"master_name": parsed.service}
    if parsed.sentinel_password:
        options["sentinel_kwargs"] = {"password": parsed.sentinel_password}
    return sentinels, options
