"""Consumers: what a hub does with the events that pass its filter."""

from ._email import EmailConsumer
from .apns_consumer import APNsConsumer
from .consumer import Consumer, FunctionConsumer
from .fcm_consumer import FCMConsumer
from .flaskemail_consumer import FlaskEmailConsumer
from .flaskmail_consumer import FlaskMailConsumer
from .log_consumer import LogConsumer
from .push_consumer import PushConsumer
from .store_consumer import StoreConsumer
from .webpush_consumer import WebPushConsumer

__all__ = [
    "APNsConsumer",
    "Consumer",
    "EmailConsumer",
    "FCMConsumer",
    "FlaskEmailConsumer",
    "FlaskMailConsumer",
    "FunctionConsumer",
    "LogConsumer",
    "PushConsumer",
    "StoreConsumer",
    "WebPushConsumer",
]
