"""Pushing one payload to many subscriptions: concurrently, each within a deadline.

Used by :class:`~flask_notifications.consumers.WebPushConsumer`. Up to
``max_parallel`` pushes run at once in a small thread pool (greenlets under
gevent's monkey-patching); each push is given ``timeout`` seconds from its
start (resolution, connection, TLS, request and answer): past that, its
sockets are shut down, it counts as a push service out of reach, and the
consumer does not wait for it. A push service that never answers therefore
delays the others by at most ``timeout`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from .._text import printable
from ..errors import (
    ConfigurationError,
    InvalidQueryError,
    PushEndpointRefused,
    PushRejected,
    PushServiceUnavailable,
)
from ._ssrf import EndpointPolicy
from ._transport import PushSession, Watch, watching
from .store import PushSubscription, parse_subscription

TIMEOUT = "NOTIFICATIONS_WEBPUSH_TIMEOUT"
#: Default ``NOTIFICATIONS_WEBPUSH_TIMEOUT``: seconds one push may take.
DEFAULT_TIMEOUT = 5.0
#: Default number of pushes sent at once.
MAX_PARALLEL = 8


def timeout_from_config(config: Mapping[str, Any]) -> float:
    """``NOTIFICATIONS_WEBPUSH_TIMEOUT`` (default :data:`DEFAULT_TIMEOUT`).

    :param config: the app's configuration.
    :raises ConfigurationError: unless it is a number above 0.
    """
    value = config.get(TIMEOUT, DEFAULT_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{TIMEOUT} must be a number of seconds > 0, not {value!r}")
    return float(value)


def origin(endpoint: str) -> str:
    """The ``scheme://host[:port]`` of an endpoint, printable, for messages.

    :param endpoint: the endpoint URL.
    """
    scheme, _, rest = endpoint.partition("://")
    return printable(f"{scheme}://{rest.split('/', 1)[0]}", 100)


@dataclass
class Outcome:
    """What became of one push."""

    #: The subscription.
    subscription: PushSubscription
    #: The push service's status when it accepted the push (2xx) or said the
    #: subscription is gone (404, 410).
    status: int | None = None
    #: Else, why it failed: :class:`PushServiceUnavailable` (transient),
    #: :class:`PushRejected`, :class:`InvalidQueryError` (a bad stored
    #: subscription), :class:`PushEndpointRefused`, :class:`ConfigurationError`,
    #: or an unexpected error.
    error: Exception | None = None


class Pusher:
    """Sends one encrypted payload to subscriptions through pywebpush.

    :param data: the payload (JSON text).
    :param vapid: the VAPID key (``py_vapid.Vapid02``).
    :param sub_claim: the VAPID ``sub`` claim.
    :param ttl: the ``TTL`` header.
    :param urgency: the ``Urgency`` header, or ``None``.
    :param timeout: seconds one push may take, from its start to the answer.
    :param policy: the endpoint rules, checked again right before each push.
    :param max_parallel: pushes sent at once.
    """

    def __init__(
        self,
        *,
        data: str,
        vapid: Any,
        sub_claim: str,
        ttl: int,
        urgency: str | None,
        timeout: float,
        policy: EndpointPolicy,
        max_parallel: int = MAX_PARALLEL,
    ) -> None:
        self.data = data
        self.vapid = vapid
        self.sub_claim = sub_claim
        self.ttl = ttl
        self.urgency = urgency
        self.timeout = timeout
        self.policy = policy
        self.max_parallel = max(1, int(max_parallel))

    def push_all(
        self, subscriptions: Sequence[PushSubscription], payloads: Sequence[str] | None = None
    ) -> list[Outcome]:
        """Push to every subscription, at most :attr:`max_parallel` at once,
        and return once each push answered, failed or reached its deadline.

        :param subscriptions: the subscriptions.
        :param payloads: the payload of each subscription (one per
            recipient's locale), in the order of ``subscriptions``; by
            default :attr:`data` for all.
        :returns: the outcomes, in the order of ``subscriptions``.
        """
        count = len(subscriptions)
        if not count:
            return []
        if payloads is not None and len(payloads) != count:
            raise ValueError(f"{len(payloads)} payloads for {count} subscriptions")
        local = threading.local()
        sessions: list[PushSession] = []
        lock = threading.Lock()
        watches = [Watch() for _ in range(count)]
        started: list[float | None] = [None] * count
        outcomes: list[Outcome | None] = [None] * count

        def session() -> PushSession:
            current = getattr(local, "session", None)
            if current is None:
                current = local.session = PushSession(self.policy)
                with lock:
                    sessions.append(current)
            return current

        def run(index: int) -> Outcome:
            started[index] = time.monotonic()
            subscription = subscriptions[index]
            try:
                with watching(watches[index]):
                    data = None if payloads is None else payloads[index]
                    status = self.push(subscription, session(), data)
                    return Outcome(subscription, status=status)
            except Exception as exc:  # noqa: BLE001 - the consumer sorts them out
                return Outcome(subscription, error=exc)

        executor = ThreadPoolExecutor(
            max_workers=min(count, self.max_parallel),
            thread_name_prefix="flask-notifications-webpush",
        )
        try:
            futures: dict[Future[Outcome], int] = {
                executor.submit(run, index): index for index in range(count)
            }
            self._collect(futures, started, watches, outcomes, subscriptions)
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            with lock:
                for each in sessions:
                    each.close()
        return [outcome for outcome in outcomes if outcome is not None]

    def _collect(
        self,
        futures: dict[Future[Outcome], int],
        started: list[float | None],
        watches: list[Watch],
        outcomes: list[Outcome | None],
        subscriptions: Sequence[PushSubscription],
    ) -> None:
        """Wait for the pushes; abort those past their deadline."""
        pending = set(futures)
        while pending:
            now = time.monotonic()
            next_deadline: float | None = None
            for future in list(pending):
                index = futures[future]
                start = started[index]
                if start is None or future.done():
                    continue
                deadline = start + self.timeout
                if deadline <= now:
                    watches[index].abort()
                    outcomes[index] = Outcome(
                        subscriptions[index],
                        error=PushServiceUnavailable(
                            f"push service {origin(subscriptions[index].endpoint)} did not "
                            f"answer within {self.timeout:g} s"
                        ),
                    )
                    pending.discard(future)
                elif next_deadline is None or deadline < next_deadline:
                    next_deadline = deadline
            if not pending:
                break
            # Until a push ends or the next deadline (a push not started yet
            # is looked at again soon).
            limit = 0.05 if next_deadline is None else max(0.0, next_deadline - now)
            done, _ = wait(pending, timeout=limit, return_when=FIRST_COMPLETED)
            for future in done:
                pending.discard(future)
                index = futures[future]
                if outcomes[index] is None:
                    outcomes[index] = future.result()

    def push(
        self, subscription: PushSubscription, session: PushSession, data: str | None = None
    ) -> int:
        """POST one push; the push service's status (2xx, 404 or 410), or raise.

        :param subscription: where to.
        :param session: the :class:`~flask_notifications.webpush._transport.PushSession`.
        :param data: the payload; by default :attr:`data`.
        :raises PushServiceUnavailable: for a 5xx or 429 answer, or no answer.
        :raises PushRejected: for another answer (3xx included: redirects are
            not followed).
        :raises PushEndpointRefused: when the endpoint is refused by the rules.
        :raises InvalidQueryError: for an invalid stored subscription.
        :raises ConfigurationError: when VAPID signing fails.
        """
        import requests
        from py_vapid import VapidException
        from pywebpush import WebPushException, webpush

        where = origin(subscription.endpoint)
        try:
            info = parse_subscription(subscription.info())
        except InvalidQueryError as exc:
            raise InvalidQueryError(f"stored push subscription {subscription.id}: {exc}") from None
        headers = {"Urgency": self.urgency} if self.urgency else None
        try:
            response = webpush(
                info,
                data=self.data if data is None else data,
                vapid_private_key=self.vapid,
                vapid_claims={"sub": self.sub_claim},
                ttl=self.ttl,
                timeout=self.timeout,
                headers=headers,  # type: ignore[arg-type]
                requests_session=session,
            )
        except WebPushException as exc:
            return _status_or_raise(exc, subscription, where)
        except PushEndpointRefused as exc:
            raise PushEndpointRefused(
                f"push subscription {subscription.id} of user "
                f"{printable(subscription.recipient, 80)}: {exc}"
            ) from None
        except requests.RequestException as exc:
            raise PushServiceUnavailable(
                f"push service {where} is out of reach: {type(exc).__name__}"
            ) from exc
        except VapidException as exc:
            raise ConfigurationError(
                f"VAPID signing failed for {where}: {printable(exc, 200)}"
            ) from None
        return int(getattr(response, "status_code", 201))


_VAPID_HINT = " - do the VAPID keys match the ones the browser subscribed with?"


def _status_or_raise(exc: Any, subscription: PushSubscription, where: str) -> int:
    """The status of a push pywebpush raised for (any status above 202)."""
    status = exc.status_code
    text = ""
    if exc.response is not None:
        text = printable(getattr(exc.response, "text", "") or "", 200)
    if status is not None and (200 <= status < 300 or status in (404, 410)):
        return int(status)
    if status is not None and (status == 429 or status >= 500):
        raise PushServiceUnavailable(f"push service {where} answered {status} {text}".rstrip())
    hint = ""
    if status in (401, 403):
        hint = _VAPID_HINT
    elif status is not None and 300 <= status < 400:
        hint = " - redirects are not followed"
    raise PushRejected(
        f"push service {where} refused the push to subscription {subscription.id} "
        f"(user {printable(subscription.recipient, 80)}): {status} {text}".rstrip()
        + hint
    )
