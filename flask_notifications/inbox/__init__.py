"""Stored notifications: the per-user inbox, its HTTP API, preferences and model events."""

from . import views as _views  # noqa: F401 - registers the HTTP API on the blueprint
from .preferences import Preferences
from .store import Inbox, Page

__all__ = ["Inbox", "Page", "Preferences"]
