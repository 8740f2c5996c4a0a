"""The caps on concurrent streams in one process: per identity, per address
(anonymous streams), and in all."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .streams import StreamRefused

if TYPE_CHECKING:
    from flask import Config

    from .streams import Stream


class Limits:
    """Counts open streams and refuses one over a cap (the caller holds the
    dispatcher's lock).

    A crowd behind one proxy or NAT address is normal: the per-address
    default admits 10,000 streams.

    :param config: the application's configuration.
    """

    __slots__ = ("max_streams", "per_user", "per_address", "count", "_identities", "_addresses")

    def __init__(self, config: Config) -> None:
        self.max_streams = int(config["NOTIFICATIONS_MAX_STREAMS"])
        self.per_user = int(config["NOTIFICATIONS_STREAMS_PER_USER"])
        self.per_address = int(config["NOTIFICATIONS_STREAMS_PER_ADDRESS"])
        #: Streams counted in this process.
        self.count = 0
        self._identities: dict[str, int] = {}
        self._addresses: dict[str, int] = {}

    def admit(self, stream: Stream) -> None:
        """Count ``stream``, or refuse it.

        :raises StreamRefused: 503 when the process holds its maximum, 429
            when the identity (or the anonymous client's address) does.
        """
        if self.count >= self.max_streams:
            raise StreamRefused(
                503,
                f"this server holds its maximum of {self.max_streams} streams "
                "(NOTIFICATIONS_MAX_STREAMS); retry later",
            )
        if stream.identity is not None:
            counts, key, limit, who = self._identities, stream.identity, self.per_user, "user"
        elif stream.address is not None:
            counts, key, limit, who = self._addresses, stream.address, self.per_address, "address"
        else:
            counts = None
        if counts is not None:
            held = counts.get(key, 0)
            if held >= limit:
                setting = f"NOTIFICATIONS_STREAMS_PER_{who.upper()}"
                raise StreamRefused(
                    429, f"too many open streams for this {who} (at most {limit}, {setting})"
                )
            counts[key] = held + 1
        self.count += 1

    def release(self, stream: Stream) -> None:
        """Undo :meth:`admit` for a stream that is being unregistered."""
        self.count -= 1
        if stream.identity is not None:
            counts, key = self._identities, stream.identity
        elif stream.address is not None:
            counts, key = self._addresses, stream.address
        else:
            return
        held = counts.get(key, 0) - 1
        if held > 0:
            counts[key] = held
        else:
            counts.pop(key, None)
