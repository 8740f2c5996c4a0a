"""gunicorn settings of the app factory: ``gunicorn -c examples/deploy/gunicorn.conf.py
'examples.deploy.app:create_app()'`` (command-line options override these)."""

import multiprocessing
import os

bind = os.environ.get("BIND", "127.0.0.1:8001")
# gevent: a stream is a greenlet, not a thread; thousands per process.
worker_class = "gevent"
# One process per core: each has one Redis subscription for all its streams.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
# Connections per process: its streams (NOTIFICATIONS_MAX_STREAMS, 10,000 in
# app.py) and ordinary requests. Past it gunicorn stops accepting, so keep it
# above the stream cap: a full process then answers 503 to a new stream
# rather than leaving the connection waiting.
worker_connections = 11_000
# Idle connections from nginx stay open longer than nginx keeps them
# (keepalive_timeout 30s in nginx.conf), so nginx never reuses a closed one.
keepalive = 75
# On SIGTERM the open streams end at once (their clients resume elsewhere
# with Last-Event-ID); ordinary requests get this long to finish.
graceful_timeout = 30
