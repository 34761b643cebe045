"""Celery application; eager (in-process) when no REDIS_URL is configured."""

import os

from celery import Celery

from core import task_request_ids

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("predictu_house")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# A task runs under the request id of the request that enqueued it (its log lines, its wallet calls).
task_request_ids.connect()
