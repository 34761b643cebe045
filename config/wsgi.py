"""WSGI entry point (gunicorn config.wsgi)."""

import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# What is loaded by now (Django, the apps, every view: the URL conf is loaded here rather than by the
# first request) lives as long as the process: frozen out of the garbage collector's reach, a full
# collection no longer walks it. A request that builds a page of 1,000 rows makes enough objects to
# start collections, and a full one over the whole heap took about 60 ms, the p99 of such pages
# (bench/operator_reads.py).
get_resolver().url_patterns  # noqa: B018 - imports every view module now
gc.freeze()
