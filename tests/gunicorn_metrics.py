"""gunicorn settings for test_metrics.py: the multiprocess hook of the docs."""

from flask_notifications.metrics import child_exit

__all__ = ["child_exit"]
