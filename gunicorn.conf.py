"""gunicorn settings for the house (read from the working directory, or pass -c gunicorn.conf.py).

Threaded workers keep client connections alive: operators' servers and load balancers reuse
connections, and the trade benchmark measured gthread with keep-alive at about a fifth less
CPU per trade than one-request-per-connection sync workers (bench/RESULTS.md). Each thread has
its own database connection (persistent, DB_CONN_MAX_AGE), so a worker process holds up to
``threads`` PostgreSQL connections. Every setting can be overridden from the environment or
the command line.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
workers = int(os.environ.get("GUNICORN_WORKERS", (os.cpu_count() or 1) + 1))
threads = int(os.environ.get("GUNICORN_THREADS", 4))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", 30))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 60))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", 30))
backlog = int(os.environ.get("GUNICORN_BACKLOG", 2048))
# The access log line ends with the request id the response carries (RequestIdMiddleware).
access_log_format = os.environ.get(
    "GUNICORN_ACCESS_LOG_FORMAT", '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" request_id=%({x-request-id}o)s'
)


def post_worker_init(worker):
    """The application is loaded: move everything it allocated so far out of the cyclic garbage
    collector's view (gc.freeze). Those objects live as long as the worker, and the collector's
    full passes no longer walk them on every few thousand allocations of a request."""
    import gc

    gc.freeze()
