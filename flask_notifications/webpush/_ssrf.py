"""Which push endpoints the workers may send to.

A push endpoint is a URL chosen by the browser, so by any signed-in user: left
unchecked, the workers would POST (with the VAPID header) to
``http://127.0.0.1:6379/``, ``http://169.254.169.254/...`` or any host of the
internal network. An endpoint is accepted only when:

- it is an ``https`` URL with a host name or address, no user name or
  password, and an ASCII host;
- its host is one of ``NOTIFICATIONS_WEBPUSH_ALLOWED_HOSTS`` (host suffixes),
  when that is set;
- every address the host resolves to is public (:func:`is_public_address`),
  or lies in ``NOTIFICATIONS_WEBPUSH_ALLOWED_NETWORKS`` (for tests and private
  push gateways; ``http`` is accepted only to those networks).

:meth:`EndpointPolicy.check` runs when a subscription is stored, and again
(:meth:`EndpointPolicy.resolve`) right before each push, whose connection
then goes to the very addresses that were checked (see
:mod:`flask_notifications.webpush._transport`), so a host that resolves to
another address by then (DNS rebinding) is refused instead.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .._text import printable
from ..errors import ConfigurationError, PushEndpointRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_HOSTS = "NOTIFICATIONS_WEBPUSH_ALLOWED_HOSTS"
ALLOWED_NETWORKS = "NOTIFICATIONS_WEBPUSH_ALLOWED_NETWORKS"

#: Host suffixes of the push services of the main browsers, a value for
#: ``NOTIFICATIONS_WEBPUSH_ALLOWED_HOSTS``: Chrome and Chromium-based browsers
#: (Firebase Cloud Messaging), Firefox (Mozilla's autopush), Edge (Windows
#: Push Notification Services) and Safari (Apple Push Notification service).
MAIN_PUSH_SERVICES = (
    "fcm.googleapis.com",
    "updates.push.services.mozilla.com",
    "notify.windows.com",
    "push.apple.com",
)

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known prefix: an IPv4 address inside
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # local-use prefix (RFC 8215)


def is_public_address(address: IPAddress) -> bool:
    """Whether ``address`` is on the public Internet.

    Refused: loopback, private (RFC 1918, unique-local ``fc00::/7``...),
    shared (``100.64.0.0/10``), link-local (``169.254.0.0/16``, ``fe80::/10``),
    multicast, reserved, unspecified (``0.0.0.0``, ``::``), site-local
    (``fec0::/10``), documentation and benchmarking ranges, and IPv6
    addresses that carry an IPv4 address which is not public itself
    (IPv4-mapped ``::ffff:127.0.0.1``, 6to4 ``2002:7f00:1::``, NAT64
    ``64:ff9b::7f00:1``).

    :param address: the address.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public_address(address.ipv4_mapped)
        if address in _NAT64:
            return is_public_address(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None and not is_public_address(address.sixtofour):
            return False
        if address.is_site_local or address in _NAT64_LOCAL:
            return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _host_suffixes(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigurationError(
            f"{ALLOWED_HOSTS} must be a list of host names or suffixes, or None, not {value!r}"
        )
    suffixes = []
    for item in value:
        text = item.strip().lower().lstrip("*").strip(".") if isinstance(item, str) else ""
        if not text or not text.isascii() or any(c.isspace() or c in "/:@" for c in text):
            raise ConfigurationError(
                f"{ALLOWED_HOSTS}: {item!r} is not a host name or suffix "
                "(like 'fcm.googleapis.com' or '*.notify.windows.com')"
            )
        suffixes.append(text)
    return tuple(suffixes)


def _networks(value: object) -> tuple[IPNetwork, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigurationError(
            f"{ALLOWED_NETWORKS} must be a list of networks (like '127.0.0.0/8'), not {value!r}"
        )
    networks = []
    for item in value:
        try:
            networks.append(ipaddress.ip_network(item))
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"{ALLOWED_NETWORKS}: {item!r} is not a network (like '127.0.0.0/8')"
            ) from None
    return tuple(networks)


@dataclass(frozen=True)
class Target:
    """Where an endpoint URL points: its scheme, host and port."""

    scheme: str
    host: str
    port: int


@dataclass(frozen=True)
class EndpointPolicy:
    """The rules of the module docstring, as configured for one app.

    :param allowed_hosts: host suffixes the endpoints must be on (a host
        matches ``example.com`` when it is ``example.com`` or ends with
        ``.example.com``), or ``None`` for any public host.
    :param allowed_networks: networks accepted although not public (``http``
        too); empty by default.
    """

    allowed_hosts: tuple[str, ...] | None = None
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> EndpointPolicy:
        """The policy of ``NOTIFICATIONS_WEBPUSH_ALLOWED_HOSTS`` and
        ``NOTIFICATIONS_WEBPUSH_ALLOWED_NETWORKS``.

        :param config: the app's configuration.
        :raises ConfigurationError: naming the setting that is malformed.
        """
        return cls(
            allowed_hosts=_host_suffixes(config.get(ALLOWED_HOSTS)),
            allowed_networks=_networks(config.get(ALLOWED_NETWORKS)),
        )

    def target(self, endpoint: str) -> Target:
        """Check the URL itself (scheme, host, port, allowed hosts), without
        resolving its host.

        :param endpoint: the endpoint URL.
        :raises PushEndpointRefused: saying what is wrong.
        """
        shown = printable(endpoint, 80)
        try:
            parts = urlsplit(endpoint)
            host, port = parts.hostname, parts.port
        except ValueError:
            raise PushEndpointRefused(f"endpoint is not a valid URL: {shown!r}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http") or not host:
            raise PushEndpointRefused(f"endpoint must be an https URL, not {shown!r}")
        if scheme == "http" and not self.allowed_networks:
            raise PushEndpointRefused(
                f"endpoint must be an https URL, not {shown!r} (http is only accepted "
                f"to the addresses of {ALLOWED_NETWORKS})"
            )
        if parts.username is not None or parts.password is not None:
            raise PushEndpointRefused("endpoint must not contain a user name or password")
        if not host.isascii():
            raise PushEndpointRefused(f"endpoint host must be ASCII (punycode), not {shown!r}")
        host = host.rstrip(".")
        if not _valid_host(host):
            raise PushEndpointRefused(f"endpoint host is not a valid host name: {shown!r}")
        if self.allowed_hosts is not None and not any(
            host == suffix or host.endswith("." + suffix) for suffix in self.allowed_hosts
        ):
            raise PushEndpointRefused(
                f"endpoint host {printable(host, 80)!r} is not a push service allowed by "
                f"{ALLOWED_HOSTS}"
            )
        return Target(scheme, host, port or (443 if scheme == "https" else 80))

    def allows(self, address: IPAddress, scheme: str = "https") -> bool:
        """Whether a push may go to ``address``: one of the allowed networks,
        else (``https`` only) a public address.

        :param address: a resolved address.
        :param scheme: the endpoint's scheme.
        """
        if address.version == 6 and address.ipv4_mapped is not None:
            mapped: IPAddress = address.ipv4_mapped
            if any(mapped in net for net in self.allowed_networks):
                return True
        if any(address in net for net in self.allowed_networks):
            return True
        return scheme == "https" and is_public_address(address)

    def resolve(self, endpoint: str) -> tuple[Target, tuple[str, ...]]:
        """Check ``endpoint`` and resolve its host, once: the addresses a push
        to it may connect to, every one of them allowed.

        :param endpoint: the endpoint URL.
        :returns: the target and its addresses (strings, in the resolver's order).
        :raises PushEndpointRefused: for a URL refused by :meth:`target`, or a
            host with an address that is not allowed.
        :raises OSError: when the host cannot be resolved now (``socket.gaierror``).
        """
        target = self.target(endpoint)
        addresses = _resolve(target.host, target.port)
        refused = [a for a in addresses if not self.allows(a, target.scheme)]
        if refused or not addresses:
            what = "http endpoint" if target.scheme == "http" else "endpoint"
            raise PushEndpointRefused(
                f"{what} host {printable(target.host, 80)!r} resolves to "
                f"{', '.join(str(a) for a in refused) or 'no address'}, "
                + (
                    f"outside {ALLOWED_NETWORKS}"
                    if target.scheme == "http"
                    else "which is not a public address"
                )
            )
        return target, tuple(dict.fromkeys(str(a) for a in addresses))

    def check(self, endpoint: str) -> None:
        """:meth:`resolve`, for storing a subscription: a host that does not
        resolve is refused too.

        :param endpoint: the endpoint URL.
        :raises PushEndpointRefused: saying what is wrong.
        """
        try:
            self.resolve(endpoint)
        except OSError:
            raise PushEndpointRefused(
                f"endpoint host {printable(self.target(endpoint).host, 80)!r} does not resolve"
            ) from None


def _valid_host(host: str) -> bool:
    """An IP address, or a DNS name of at most 253 characters made of labels of
    1 to 63 letters, digits, ``-`` (not first or last) and ``_``."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return 0 < len(host) <= 253 and all(_LABEL.match(label) for label in host.split("."))
    return True


def _resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses of ``host`` (an address literal is its own address)."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[IPAddress] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        # Drop an IPv6 zone ("fe80::1%eth0"): the address alone decides.
        addresses.append(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
    return addresses
