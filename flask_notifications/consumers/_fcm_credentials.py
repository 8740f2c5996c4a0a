"""A Firebase service account's key and its OAuth2 access token, for
:class:`~flask_notifications.consumers.FCMConsumer`."""

from __future__ import annotations

import json
import threading

from ..errors import ConfigurationError, PushRejected, PushServiceUnavailable
from ._push_http import verifying_session

__all__ = ["CREDENTIALS", "Credentials"]

CREDENTIALS = "NOTIFICATIONS_FCM_CREDENTIALS"


class Credentials:
    """A service account's key, with its OAuth2 access token (refreshed by google-auth)."""

    #: The OAuth2 scope FCM HTTP v1 asks for.
    scope = "https://www.googleapis.com/auth/firebase.messaging"

    def __init__(self, path: str) -> None:
        try:
            from google.oauth2 import service_account
        except ImportError as exc:  # pragma: no cover - without the mobile extra
            raise ConfigurationError(
                "FCMConsumer needs google-auth: pip install 'Flask-Notifications[mobile]'"
            ) from exc
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
            self.project_id = info["project_id"]
            self.credentials = service_account.Credentials.from_service_account_info(
                info, scopes=[self.scope]
            )
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigurationError(
                f"{CREDENTIALS} must name a service account's JSON key with a project_id: {exc}"
            ) from exc
        self.lock = threading.Lock()

    def token(self, timeout: float, stale: str | None = None) -> str:
        """The access token, fetched from ``token_uri`` when there is none
        yet, it expired, or it is ``stale`` (FCM refused it with ``401``;
        when another thread already replaced it, the new one is returned)."""
        import google.auth.exceptions
        import google.auth.transport.requests

        with self.lock:
            if not self.credentials.valid or (
                stale is not None and self.credentials.token == stale
            ):
                session = verifying_session()
                try:
                    self.credentials.refresh(
                        google.auth.transport.requests.Request(session)  # type: ignore[no-untyped-call]
                    )
                except google.auth.exceptions.TransportError as exc:
                    raise PushServiceUnavailable(
                        f"the FCM token endpoint is unreachable: {exc}"
                    ) from exc
                except google.auth.exceptions.RefreshError as exc:
                    raise PushRejected(f"the FCM token endpoint refused the key: {exc}") from exc
                finally:
                    session.close()
            return str(self.credentials.token)
