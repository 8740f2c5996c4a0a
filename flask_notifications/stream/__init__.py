"""Real-time streaming: SSE framing, the per-process dispatcher, the blueprint."""

from .dispatcher import Dispatcher, Stream
from .views import stream_response

__all__ = ["Dispatcher", "Stream", "stream_response"]
