"""Groups of throw-away Redis servers for tests: a Redis Cluster, and a
master with a replica and Sentinels (re-exported by
:mod:`flask_notifications.testing`).

Every process is started from the same ``redis-server`` binary and is only
ever signalled through the object that started it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Self

import redis

from ._children import _ChildServer, free_port
from ._redis_servers import RedisServer, find_redis_cli, find_redis_server

#: The service name of :class:`RedisSentinelServer`'s master.
SERVICE = "mymaster"


def _wait(predicate: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except redis.RedisError as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"{what} within {timeout:g}s" + (f" ({last})" if last else ""))


def _cluster_port() -> int:
    """A free port whose cluster bus port (10000 above) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class RedisClusterServer(_ChildServer):
    """A Redis Cluster of ``masters`` masters (no replicas) on 127.0.0.1,
    created with ``redis-cli --cluster create`` (or, without ``redis-cli``,
    ``CLUSTER ADDSLOTSRANGE`` and ``CLUSTER MEET``).

    :param masters: how many masters (shards); at least 3 for ``redis-cli``.
    :param executable: the binary; :func:`find_redis_server` when omitted.
    :param use_cli: create the cluster with ``redis-cli`` when one is found
        (``True``), or with commands (``False``).
    :param extra_args: further ``redis-server`` arguments for every node.
    """

    def __init__(
        self,
        masters: int = 3,
        *,
        executable: str | None = None,
        use_cli: bool = True,
        extra_args: list[str] | None = None,
    ) -> None:
        self.executable = executable or find_redis_server()
        self.use_cli = use_cli
        self.nodes = [
            RedisServer(
                executable=self.executable,
                port=_cluster_port(),
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                    *(extra_args or []),
                ],
            )  # fmt: skip
            for _ in range(masters)
        ]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:<port>,127.0.0.1:<port>,...``"""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 30.0) -> Self:
        """Start the nodes, create the cluster and wait until every node
        reports ``cluster_state:ok`` and knows every master.

        :param timeout: seconds to wait for it.
        """
        try:
            for node in self.nodes:
                node.start()
            cli = find_redis_cli(self.executable) if self.use_cli else None
            if cli is not None and len(self.nodes) >= 3:
                addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
                subprocess.run(
                    [cli, "--cluster", "create", *addresses, "--cluster-yes"],
                    check=True, capture_output=True, timeout=timeout,
                )  # fmt: skip
            else:
                self._create_with_commands()
            _wait(self._ready, "the cluster did not become ready", timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _create_with_commands(self) -> None:
        share = 16384 // len(self.nodes)
        for index, node in enumerate(self.nodes):
            first = index * share
            last = 16383 if index == len(self.nodes) - 1 else first + share - 1
            with node.client() as client:
                client.execute_command("CLUSTER ADDSLOTS", *range(first, last + 1))
                if index:
                    client.execute_command("CLUSTER MEET", "127.0.0.1", self.nodes[0].port)

    def _ready(self) -> bool:
        for node in self.nodes:
            with node.client(decode_responses=True) as client:
                info = client.execute_command("CLUSTER INFO")
                if info.get("cluster_state") != "ok":
                    return False
                if int(info.get("cluster_known_nodes", 0)) != len(self.nodes):
                    return False
        return True

    def flushall(self) -> None:
        """Empty every node."""
        for node in self.nodes:
            with node.client() as client:
                client.flushall()

    def stop(self) -> None:
        """Stop every node this object started."""
        for node in self.nodes:
            node.stop()


class _Sentinel(RedisServer):
    """A ``redis-server --sentinel`` process watching one master."""

    def __init__(self, master_port: int, executable: str) -> None:
        super().__init__(executable=executable)
        self.master_port = master_port

    def _arguments(self) -> list[str]:
        conf = self.directory / "sentinel.conf"
        if not conf.exists():  # a Sentinel rewrites its file: written once
            conf.write_text(
                f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
        return [self.executable, str(conf), "--sentinel", "--daemonize", "no",
                "--loglevel", "warning"]  # fmt: skip


class RedisSentinelServer(_ChildServer):
    """A master, a replica and three Sentinels (quorum 2, the master counts
    as down after 1 s) on 127.0.0.1: :attr:`url` is a ``redis+sentinel://``
    URL. :meth:`kill_master` SIGKILLs the current master, and
    :meth:`wait_for_failover` waits until the Sentinels promoted the replica.

    :param executable: the binary; :func:`find_redis_server` when omitted.
    """

    def __init__(self, *, executable: str | None = None) -> None:
        self.executable = executable or find_redis_server()
        # No delay before a replica's full sync (Redis 7 waits 5 s by default).
        fast_sync = ["--repl-diskless-sync-delay", "0"]
        self.master = RedisServer(executable=self.executable, extra_args=fast_sync)
        self.replica = RedisServer(
            executable=self.executable,
            extra_args=[*fast_sync, "--replicaof", "127.0.0.1", str(self.master.port)],
        )
        self.servers = [self.master, self.replica]
        self.sentinels = [_Sentinel(self.master.port, self.executable) for _ in range(3)]

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:<port>,...,127.0.0.1:<port>/mymaster/0``"""
        nodes = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{nodes}/{SERVICE}/0"

    def start(self, timeout: float = 30.0) -> Self:
        """Start the servers and the Sentinels, and wait until the replica is
        in sync and every Sentinel knows the replica and the other Sentinels.

        :param timeout: seconds to wait for it.
        """
        try:
            self.master.start()
            self.replica.start()
            _wait(self._replicated, "the replica did not sync", timeout)
            for sentinel in self.sentinels:
                sentinel.start()
            _wait(self._watching, "the Sentinels did not find each other", timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _replicated(self) -> bool:
        with self.replica.client() as client:
            return client.info("replication").get("master_link_status") == "up"

    def _watching(self) -> bool:
        for sentinel in self.sentinels:
            with sentinel.client(decode_responses=True) as client:
                state = client.sentinel_master(SERVICE)
                if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                    return False
        return True

    def master_port(self) -> int:
        """The port of the master, as the first Sentinel that answers sees it."""
        for sentinel in self.sentinels:
            if sentinel.process is None:
                continue
            with sentinel.client(socket_timeout=1) as client:
                return int(client.sentinel_get_master_addr_by_name(SERVICE)[1])
        raise RuntimeError("no Sentinel is running")

    def current_master(self) -> RedisServer:
        """The server the Sentinels see as the master."""
        port = self.master_port()
        return next(server for server in self.servers if server.port == port)

    def kill_master(self) -> RedisServer:
        """SIGKILL the current master (as a crash would); returns it."""
        master = self.current_master()
        master.kill()
        return master

    def wait_for_failover(self, old_port: int, timeout: float = 30.0) -> RedisServer:
        """Wait until every Sentinel names another master than ``old_port``,
        and that server answers as a master; returns it.

        :param old_port: the port of the master that failed.
        :param timeout: seconds to wait.
        """

        def promoted() -> bool:
            ports = set()
            for sentinel in self.sentinels:
                with sentinel.client(socket_timeout=1) as client:
                    ports.add(int(client.sentinel_get_master_addr_by_name(SERVICE)[1]))
            if len(ports) != 1 or old_port in ports:
                return False
            with self.current_master().client(socket_timeout=1) as client:
                return client.info("replication").get("role") == "master"

        _wait(promoted, "no failover", timeout)
        return self.current_master()

    def stop(self) -> None:
        """Stop every server and Sentinel this object started."""
        for server in [*self.sentinels, *self.servers]:
            server.stop()
