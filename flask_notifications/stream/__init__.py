"""Real-time streaming: SSE framing, the per-process dispatcher, the blueprint."""

from .dispatcher import Dispatcher, Stream
from .views import blueprint, stream_response

__all__ = ["Dispatcher", "Stream", "blueprint", "stream_response"]
