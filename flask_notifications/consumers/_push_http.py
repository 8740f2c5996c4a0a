"""TLS and ``Retry-After`` for the mobile push consumers (FCM and APNs)."""

from __future__ import annotations

import os
import ssl
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = ["retry_after", "ssl_context", "verifying_session"]


def ssl_context() -> ssl.SSLContext:
    """A verifying TLS context: the system's CAs plus the files named by
    ``SSL_CERT_FILE`` and ``REQUESTS_CA_BUNDLE`` when set."""
    context = ssl.create_default_context()
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        path = os.environ.get(name)
        if path and os.path.isfile(path):
            context.load_verify_locations(cafile=path)
    return context


def verifying_session() -> Any:
    """A requests session whose TLS context is :func:`ssl_context`: google-auth
    fetches the access token with requests, which reads ``REQUESTS_CA_BUNDLE``
    only, so ``SSL_CERT_FILE``'s CA is added this way."""
    import requests
    import requests.adapters

    class VerifyingAdapter(requests.adapters.HTTPAdapter):  # type: ignore[misc]
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["ssl_context"] = ssl_context()
            super().init_poolmanager(*args, **kwargs)

    session = requests.Session()
    session.mount("https://", VerifyingAdapter())
    return session


def retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header (seconds or an HTTP date), or ``None``.

    :param value: the header.
    """
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
