"""The request id travels with the Celery tasks a request enqueues: the publisher puts it in the
message's headers, the worker binds it for the task's run (its log lines, its wallet calls), and a
task nobody's request enqueued (beat, a retry without one) runs under a fresh id.

Eager Celery (no broker) runs a task inside the caller: it keeps the caller's id and gives the
caller its context back when done.
"""

from collections.abc import Mapping
from contextvars import Token

import structlog
from celery import signals

from core.middleware import request_id_current, request_id_new, request_id_valid

HEADER = "house_request_id"

# task id -> the context tokens to reset when that task's run ends.
_bound: dict[str, Mapping[str, Token]] = {}


def task_origin(request) -> str | None:
    """The request id a task message carries. A worker turns the message's headers into attributes
    of the task's request; Task.apply(headers=...) keeps them in request.headers."""
    value = getattr(request, HEADER, None) or (getattr(request, "headers", None) or {}).get(HEADER)
    return value if request_id_valid(value) else None


def on_publish(headers=None, **kwargs) -> None:
    request_id = request_id_current()
    if request_id and headers is not None:
        headers.setdefault(HEADER, request_id)


def on_prerun(task_id=None, task=None, **kwargs) -> None:
    request = task.request
    inherited = request_id_current() if request.is_eager else None
    request_id = task_origin(request) or inherited or request_id_new()
    _bound[task_id] = structlog.contextvars.bind_contextvars(request_id=request_id, task=task.name)


def on_postrun(task_id=None, **kwargs) -> None:
    tokens = _bound.pop(task_id, None)
    if tokens is None:
        return
    try:
        structlog.contextvars.reset_contextvars(**tokens)
    except ValueError:  # the run ended in another context than it began: leave that one clean
        structlog.contextvars.clear_contextvars()


def connect() -> None:
    signals.before_task_publish.connect(on_publish, weak=False, dispatch_uid="house.request_id.publish")
    signals.task_prerun.connect(on_prerun, weak=False, dispatch_uid="house.request_id.prerun")
    signals.task_postrun.connect(on_postrun, weak=False, dispatch_uid="house.request_id.postrun")
