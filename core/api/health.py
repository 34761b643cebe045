"""Liveness, readiness and Prometheus metrics."""

import os

from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, JsonResponse


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - report, do not crash the probe
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        cache.set("readyz", "1", 5)
        checks["cache"] = "ok" if cache.get("readyz") == "1" else "error: no read-back"
    except Exception as exc:  # noqa: BLE001
        checks["cache"] = f"error: {exc.__class__.__name__}"
    checks["broker"] = _broker_check()
    ready = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    for name, report in INFO.items():  # information only: a dead market feed does not take the API out of service
        try:
            body[name] = report()
        except Exception as exc:  # noqa: BLE001 - report, do not crash the probe
            body[name] = {"status": f"error: {exc.__class__.__name__}"}
    return JsonResponse(body, status=200 if ready else 503)


# name -> callable returning a JSON-ready dict, shown by /readyz (an app registers it at start-up).
INFO: dict = {}


def register_info(name: str, report) -> None:
    INFO[name] = report


def _broker_check() -> str:
    from celery import current_app as app  # the project's Celery app (config/celery.py), without importing config

    if app.conf.task_always_eager:
        return "ok"
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"error: {exc.__class__.__name__}"


def metrics(request):
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        generate_latest,
    )

    from core.metrics import COLLECTORS

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        for collector in COLLECTORS:
            registry.register(collector)
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
