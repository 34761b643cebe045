"""gunicorn settings for the house (read from the working directory, or pass -c gunicorn.conf.py).

Threaded workers keep client connections alive: operators' servers and load balancers reuse
connections, and the trade benchmark measured gthread with keep-alive at about a fifth less
CPU per trade than one-request-per-connection sync workers (bench/RESULTS.md). Each thread has
its own database connection (persistent, DB_CONN_MAX_AGE), so a worker process holds up to
``threads`` PostgreSQL connections. Every setting can be overridden from the environment or
the command line.

``reuse_port`` (on unless ``GUNICORN_REUSE_PORT=0``): each worker binds its own listening socket
(SO_REUSEPORT) and the kernel spreads new connections over them. With gunicorn's one shared
socket, whichever worker woke first accepted, and a burst of keep-alive connections could land
mostly on one worker, serialised by its interpreter lock while the others idled (the benchmark saw
58 of 64 connections on one of three workers; spreading them took the open-loop p99 at half of
peak from 30-38 ms to 20-21 ms). Two things come with it: any process of the same user can bind
the same port and take a share of the connections (a stale instance on a fixed port would), and a
worker that stops drops the connections still waiting in its own accept queue unless the kernel
migrates them (Linux >= 5.14, ``sysctl net.ipv4.tcp_migrate_req=1``).
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
reuse_port = os.environ.get("GUNICORN_REUSE_PORT", "1").lower() not in ("0", "false", "no", "off")
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
