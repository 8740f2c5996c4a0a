"""Real-time streaming: SSE framing, the per-process dispatcher, the blueprint."""

from ._shutdown import stop_streams
from .dispatcher import Dispatcher, Stream
from .views import stream_response

__all__ = ["Dispatcher", "Stream", "stop_streams", "stream_response"]
