"""FCMConsumer and APNsConsumer throughput: pushes per second per worker,
on local fakes (``--service fcm`` or ``apns``).

Starts a redis-server and the tests' fake FCM HTTP v1 service and OAuth2
token endpoint (``tests/test_mobile_fcm.py``: TLS with a trustme CA, bearer
token and message shape checked, on 127.0.0.1), registers ``--devices``
Android devices of as many users, and times ``FCMConsumer.consume`` of one
event to all of them (in one process, as a worker runs it), ``--repeat``
times. ``--service apns``: the tests' HTTP/2 fake APNs instead
(``tests/apns_server.py``: on ``h2``, ES256 token and headers checked), iOS
devices. Never contacts Google or Apple.

Usage: python benchmarks/mobile_push.py [--service fcm|apns] [--devices 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_notifications import Event, Notifications  # noqa: E402
from flask_notifications._redis_servers import RedisServer  # noqa: E402
from flask_notifications.consumers import FCMConsumer  # noqa: E402
from tests.test_mobile_fcm import PROJECT, FakeFCM  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--service", choices=["fcm", "apns"], default="fcm")
    args = parser.parse_args()
    if args.service == "apns":
        return apns(args)
    ca = trustme.CA()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    service = FakeFCM(ca, public_pem)
    with RedisServer() as redis_server, tempfile.TemporaryDirectory() as tmp:
        ca_file = Path(tmp) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        os.environ["REQUESTS_CA_BUNDLE"] = str(ca_file)
        credentials = Path(tmp) / "key.json"
        credentials.write_text(json.dumps({
            "type": "service_account", "project_id": PROJECT, "private_key_id": "k1",
            "private_key": key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            "client_email": "push@demo.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": f"{service.base}/token",
        }))  # fmt: skip
        app = Flask("bench", instance_path=tmp)
        app.config.update(
            NOTIFICATIONS_REDIS_URL=redis_server.url,
            NOTIFICATIONS_DATABASE_URI=f"sqlite:///{Path(tmp) / 'inbox.sqlite'}",
            NOTIFICATIONS_FCM_CREDENTIALS=str(credentials),
            NOTIFICATIONS_FCM_ENDPOINT=service.base,
        )
        notifications = Notifications(app)
        consumer = FCMConsumer()
        users = [f"user{i}" for i in range(args.devices)]
        with app.app_context():
            for user in users:
                notifications.devices.add(user, {"platform": "android", "token": f"tok-{user}"})
            rates = _measure(consumer, users, args.repeat)
    service.stop()
    assert service.errors == [], service.errors
    _report(rates)


def apns(args: argparse.Namespace) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from flask_notifications.consumers import APNsConsumer
    from tests.apns_server import FakeAPNs
    from tests.test_mobile_apns import KEY_ID, TEAM_ID, TOPIC

    ca = trustme.CA()
    key = ec.generate_private_key(ec.SECP256R1())
    with RedisServer() as redis_server, tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "AuthKey.p8"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )  # fmt: skip
        ca_file = Path(tmp) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        os.environ["SSL_CERT_FILE"] = str(ca_file)
        service = FakeAPNs(ca, key.public_key(), topic=TOPIC, key_id=KEY_ID, team_id=TEAM_ID)
        app = Flask("bench", instance_path=tmp)
        app.config.update(
            NOTIFICATIONS_REDIS_URL=redis_server.url,
            NOTIFICATIONS_DATABASE_URI=f"sqlite:///{Path(tmp) / 'inbox.sqlite'}",
            NOTIFICATIONS_APNS_KEY_FILE=str(key_file),
            NOTIFICATIONS_APNS_KEY_ID=KEY_ID,
            NOTIFICATIONS_APNS_TEAM_ID=TEAM_ID,
            NOTIFICATIONS_APNS_TOPIC=TOPIC,
            NOTIFICATIONS_APNS_ENDPOINT=service.base,
        )
        notifications = Notifications(app)
        consumer = APNsConsumer()
        users = [f"user{i}" for i in range(args.devices)]
        with app.app_context():
            for user in users:
                notifications.devices.add(user, {"platform": "ios", "token": f"{user:0>64}"})
            rates = _measure(consumer, users, args.repeat)
        service.stop()
        assert len(service.delivered) == args.devices * args.repeat, len(service.delivered)
        print(f"{service.connections} connection(s), one per event")
        assert service.errors == [], service.errors[:3]
    _report(rates)


def _measure(consumer: Any, users: list[str], repeat: int) -> list[float]:
    """Push one event to every user's device ``repeat`` times; pushes per
    second of each (in an app context)."""
    rates = []
    for _ in range(repeat):
        event = Event(None, "comment", "New comment", "Nice post!", recipients=users)
        started = time.perf_counter()
        sent = consumer.consume(event)
        elapsed = time.perf_counter() - started
        assert sent == len(users), sent
        rates.append(sent / elapsed)
        print(f"{sent} pushes in {elapsed:.2f} s: {sent / elapsed:.0f} pushes/s")
    return rates


def _report(rates: list[float]) -> None:
    print(f"best {max(rates):.0f} pushes/s, median {sorted(rates)[len(rates) // 2]:.0f}")


if __name__ == "__main__":
    main()
