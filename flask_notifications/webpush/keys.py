"""VAPID keys: reading them from the configuration, and making a new pair.

Keys are written the way browsers and most Web Push libraries write them:
the private key as the base64url form of its 32-byte secret, the public key
as the base64url form of its 65-byte uncompressed P-256 point (what
``pushManager.subscribe()`` takes as ``applicationServerKey``). A private key
in PEM, or base64 DER, is accepted too.

:mod:`py_vapid` and :mod:`cryptography` (installed with ``pywebpush``, the
``webpush`` extra) are imported only when a key is parsed or generated; without
them, that raises a :class:`~flask_notifications.errors.ConfigurationError`
that says what to install (:data:`INSTALL_HINT`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from py_vapid import Vapid02

PRIVATE_KEY = "NOTIFICATIONS_VAPID_PRIVATE_KEY"
PUBLIC_KEY = "NOTIFICATIONS_VAPID_PUBLIC_KEY"
CLAIMS_SUB = "NOTIFICATIONS_VAPID_CLAIMS_SUB"
#: The command that installs what Web Push needs.
INSTALL_HINT = 'pip install "Flask-Notifications[webpush]"'

_B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_SUB = re.compile(r"^(mailto:[^@\s]+@[^@\s]+|https://[^\s/]+(/\S*)?)$", re.IGNORECASE)


def b64url_encode(data: bytes) -> str:
    """base64url without padding, as Web Push writes keys.

    :param data: the bytes.
    """
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url, with or without its ``=`` padding.

    :param text: the encoded text.
    :raises ValueError: if it is not base64url.
    """
    if not isinstance(text, str) or not _B64URL.match(text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def _import_vapid() -> tuple[Any, Any]:
    """:mod:`py_vapid` and cryptography's ``serialization`` module.

    :raises ConfigurationError: with :data:`INSTALL_HINT`, when the ``webpush``
        extra is not installed.
    """
    try:
        import py_vapid
        from cryptography.hazmat.primitives import serialization
    except ImportError as exc:
        missing = (exc.name or "pywebpush").split(".")[0]  # the distribution, not a submodule
        raise ConfigurationError(
            f"Web Push needs the webpush extra ({missing} is not installed): {INSTALL_HINT}"
        ) from None
    return py_vapid, serialization


def generate_vapid_keys() -> tuple[str, str]:
    """Make a new VAPID key pair.

    :returns: ``(private key, public key)``, both base64url (see the module's
        documentation), ready for ``NOTIFICATIONS_VAPID_PRIVATE_KEY`` and
        ``NOTIFICATIONS_VAPID_PUBLIC_KEY``.
    :raises ConfigurationError: when the ``webpush`` extra is not installed.
    """
    py_vapid, serialization = _import_vapid()
    vapid = py_vapid.Vapid()
    vapid.generate_keys()
    secret = vapid.private_key.private_numbers().private_value.to_bytes(32, "big")
    point = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url_encode(secret), b64url_encode(point)


@lru_cache(maxsize=16)
def _parse(private_key: str, public_key: str | None) -> tuple[Vapid02, str]:
    py_vapid, serialization = _import_vapid()
    text = private_key.strip()
    try:
        if "-----BEGIN" in text:
            vapid = py_vapid.Vapid.from_pem(text.encode())
        else:
            vapid = py_vapid.Vapid.from_string(text)
    except Exception as exc:  # noqa: BLE001 - py_vapid raises whatever cryptography raises
        raise ConfigurationError(
            f"{PRIVATE_KEY} is not a VAPID private key (base64url of a 32-byte P-256 "
            f"secret, or PEM): {type(exc).__name__}"
        ) from None
    derived = b64url_encode(
        vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )
    if public_key is not None and public_key.strip().rstrip("=") != derived:
        raise ConfigurationError(
            f"{PUBLIC_KEY} does not belong to {PRIVATE_KEY}: generate both with "
            "'flask notifications vapid-keys'"
        )
    return vapid, derived


def vapid_from_config(config: Mapping[str, Any]) -> tuple[Vapid02, str, str]:
    """The signing key, the public key and the ``sub`` claim of an app.

    :param config: the app's configuration.
    :returns: ``(py_vapid.Vapid, public key as base64url, sub claim)``.
    :raises ConfigurationError: naming the setting that is missing or wrong: no
        private key, one that does not parse, a public key that is not its
        pair, a ``sub`` claim that is not a ``mailto:`` or ``https:`` URL.
    """
    private_key = config.get(PRIVATE_KEY)
    if not private_key or not isinstance(private_key, str):
        raise ConfigurationError(
            f"{PRIVATE_KEY} is not set: Web Push needs VAPID keys "
            "(generate them with 'flask notifications vapid-keys')"
        )
    public_key = config.get(PUBLIC_KEY)
    if public_key is not None and not isinstance(public_key, str):
        raise ConfigurationError(f"{PUBLIC_KEY} must be a string, not {public_key!r}")
    sub = config.get(CLAIMS_SUB)
    if not isinstance(sub, str) or not _SUB.match(sub):
        raise ConfigurationError(
            f"{CLAIMS_SUB} must be a 'mailto:' address or an 'https://' URL where push "
            f"services can reach you, not {sub!r}"
        )
    vapid, derived = _parse(private_key, public_key or None)
    return vapid, derived, sub


def public_key_from_config(config: Mapping[str, Any]) -> str | None:
    """The VAPID public key browsers subscribe with: ``NOTIFICATIONS_VAPID_PUBLIC_KEY``,
    else the one derived from ``NOTIFICATIONS_VAPID_PRIVATE_KEY``, else ``None``.

    A configured public key is not checked against the private key here (the
    web process may not have the private key); :func:`vapid_from_config`, in
    the workers, checks that they are a pair.

    :param config: the app's configuration.
    :raises ConfigurationError: if the public key is not a P-256 point in
        base64url, or (without one) the private key does not parse.
    """
    public_key = config.get(PUBLIC_KEY)
    if public_key:
        if not isinstance(public_key, str):
            raise ConfigurationError(f"{PUBLIC_KEY} must be a string, not {public_key!r}")
        try:
            point = b64url_decode(public_key.strip())
        except ValueError:
            point = b""
        if len(point) != 65 or point[0] != 4:
            raise ConfigurationError(
                f"{PUBLIC_KEY} must be the base64url form of a 65-byte uncompressed P-256 point"
            )
        return b64url_encode(point)
    private_key = config.get(PRIVATE_KEY)
    if isinstance(private_key, str) and private_key:
        return _parse(private_key, None)[1]
    return None
