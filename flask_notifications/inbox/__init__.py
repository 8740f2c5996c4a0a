"""Stored notifications: the per-user inbox, its HTTP API, preferences and model events."""

from .preferences import Preferences
from .store import Inbox, Page

__all__ = ["Inbox", "Page", "Preferences"]
