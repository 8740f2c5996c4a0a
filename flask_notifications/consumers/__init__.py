"""Consumers: what a hub does with the events that pass its filter."""

from .consumer import Consumer, FunctionConsumer
from .log_consumer import LogConsumer
from .push_consumer import PushConsumer
from .store_consumer import StoreConsumer

__all__ = ["Consumer", "FunctionConsumer", "LogConsumer", "PushConsumer", "StoreConsumer"]
