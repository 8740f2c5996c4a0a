"""The HTTP transport of the pushes: checked addresses only, no redirects,
short answers, a deadline.

:class:`PushSession` is the :class:`requests.Session` given to pywebpush:

- its adapter resolves the endpoint's host once per push, refuses it unless
  every address is allowed (:meth:`EndpointPolicy.resolve
  <flask_notifications.webpush._ssrf.EndpointPolicy.resolve>`), and connects
  to those very addresses: the host name still goes into the ``Host``
  header, the TLS server name (SNI) and the certificate check, but is not
  resolved a second time (no DNS rebinding between the check and the
  connection);
- it never follows a redirect (a 3xx answer is returned as is), ignores the
  environment's proxies and ``.netrc``, and reads at most
  :data:`MAX_ANSWER_BYTES` of an answer;
- every connection a push uses is registered with the push's :class:`Watch`,
  so the push can be cut at its deadline.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection

from ._ssrf import EndpointPolicy

#: The longest part of a push service's answer that is read (its body only
#: goes into error messages).
MAX_ANSWER_BYTES = 16 * 1024

_local = threading.local()


class PushCancelled(requests.ConnectionError):
    """The push reached its deadline (:meth:`Watch.abort`) before it connected."""


class Watch:
    """The connections one push uses, to cut them at its deadline."""

    def __init__(self) -> None:
        self.cancelled = False
        self._connections: list[HTTPConnection] = []
        self._lock = threading.Lock()

    def add(self, conn: HTTPConnection) -> None:
        """Register a connection the push is about to use.

        :param conn: the connection.
        :raises PushCancelled: when the push was aborted already.
        """
        with self._lock:
            if self.cancelled:
                raise PushCancelled("the push reached its deadline")
            self._connections.append(conn)

    def abort(self) -> None:
        """Cancel the push: no new connection, and the sockets of the current
        ones are shut down, which ends a read that is waiting on them."""
        with self._lock:
            self.cancelled = True
            connections = list(self._connections)
        for conn in connections:
            sock = getattr(conn, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@contextmanager
def watching(watch: Watch) -> Iterator[Watch]:
    """Register the connections of the pushes made in this thread with ``watch``.

    :param watch: the push's watch.
    """
    _local.watch = watch
    try:
        yield watch
    finally:
        _local.watch = None


def _register(conn: HTTPConnection) -> None:
    watch = getattr(_local, "watch", None)
    if watch is not None:
        watch.add(conn)


class _Pinned:
    """Connects to the checked addresses instead of resolving the host again."""

    # HTTPConnection's attributes, for the type checker.
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any
    host: str

    def __init__(self, *args: Any, addresses: tuple[str, ...] = (), **kwargs: Any) -> None:
        self._addresses = addresses
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        _register(self)  # type: ignore[arg-type]
        last: OSError | None = None
        for address in self._addresses:
            try:
                return connection.create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except OSError as exc:  # refused, unreachable, timed out: the next address
                last = exc
        if isinstance(last, TimeoutError):
            raise ConnectTimeoutError(
                self, f"connection to {self.host} timed out (connect timeout={self.timeout})"
            ) from last
        raise NewConnectionError(
            self,  # type: ignore[arg-type]
            f"failed to connect to {self.host} at {', '.join(self._addresses)}: {last}",
        ) from last

    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self)  # type: ignore[arg-type]  # a reused connection too
        super().request(*args, **kwargs)  # type: ignore[misc]


class _PinnedHTTPConnection(_Pinned, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_Pinned, HTTPSConnection):
    pass


class _PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


class PinnedAdapter(HTTPAdapter):
    """A transport adapter that checks each request's host with ``policy`` and
    connects to the addresses it checked.

    :param policy: the endpoint rules.
    """

    def __init__(self, policy: EndpointPolicy) -> None:
        self.policy = policy
        self._pools: dict[tuple[Any, ...], HTTPConnectionPool] = {}
        self._pools_lock = threading.Lock()
        super().__init__(max_retries=0)

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: Any,
        proxies: Any = None,
        cert: Any = None,
    ) -> HTTPConnectionPool:
        """The pool of the request's host, pinned to its checked addresses.

        :param request: the request about to be sent.
        :param verify: requests' ``verify``.
        :param proxies: ignored: pushes go straight to the push service.
        :param cert: requests' ``cert``.
        :raises PushEndpointRefused: when the host or one of its addresses is
            not allowed.
        :raises requests.ConnectionError: when the host does not resolve.
        """
        try:
            target, addresses = self.policy.resolve(str(request.url))
        except OSError as exc:
            raise requests.ConnectionError(
                f"cannot resolve the push service's host: {exc}"
            ) from exc
        _, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        key = (target, addresses, tuple(sorted(pool_kwargs.items())))
        with self._pools_lock:
            pool = self._pools.get(key)
            if pool is None:
                if target.scheme == "https":
                    pool = _PinnedHTTPSPool(
                        target.host, target.port, maxsize=4, addresses=addresses, **pool_kwargs
                    )
                else:
                    pool = _PinnedHTTPPool(target.host, target.port, maxsize=4, addresses=addresses)
                self._pools[key] = pool
        return pool

    def close(self) -> None:
        """Close every pool."""
        super().close()
        with self._pools_lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


class PushSession(requests.Session):
    """The session of the pushes (see the module docstring).

    :param policy: the endpoint rules.
    """

    def __init__(self, policy: EndpointPolicy) -> None:
        super().__init__()
        self.trust_env = False  # no proxies or .netrc from the environment
        adapter = PinnedAdapter(policy)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Send without following redirects, and read at most
        :data:`MAX_ANSWER_BYTES` of the answer."""
        kwargs["allow_redirects"] = False
        kwargs["stream"] = True
        response = super().request(method, url, *args, **kwargs)
        try:
            content = response.raw.read(MAX_ANSWER_BYTES, decode_content=False) or b""
        except Exception as exc:  # noqa: BLE001 - a cut or timed-out answer
            response.close()
            raise requests.ConnectionError(f"reading the answer failed: {exc}") from exc
        response._content = content
        # Read to its end: the connection goes back to the pool; else it is closed.
        response._content_consumed = len(content) < MAX_ANSWER_BYTES
        response.close()
        return response
