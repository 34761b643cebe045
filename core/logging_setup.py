"""Logging: one JSON line per event, from structlog and from the standard library alike (house.*,
Django, Celery), each carrying the request id bound by RequestIdMiddleware (or a task's run).

structlog events are handed to the standard library's handlers as dicts and rendered there by
JSONFormatter (settings.LOGGING), which also renders everybody else's records. Every LogRecord is
stamped with the request id when it is created (``record.request_id``), so a handler that formats
later or elsewhere (pytest's caplog, a queue) still sees the id of the request that logged it.
"""

import logging

import structlog

from core.middleware import request_id_current

_configured = False

_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _record_request_id(logger, method_name, event_dict):
    """A standard-library record's own request id (stamped at creation) wins over the formatting thread's."""
    record = event_dict.get("_record")
    request_id = getattr(record, "request_id", None)
    if request_id:
        event_dict["request_id"] = request_id
    return event_dict


class JSONFormatter(structlog.stdlib.ProcessorFormatter):
    """settings.LOGGING's formatter: structlog's events and stdlib records as one JSON line each."""

    def __init__(self, *args, **kwargs):
        super().__init__(
            *args,
            foreign_pre_chain=[*_SHARED, _record_request_id],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
            **kwargs,
        )


def _stamp_request_id(factory):
    def make_record(*args, **kwargs):
        record = factory(*args, **kwargs)
        record.request_id = request_id_current()
        return record

    make_record.stamps_request_id = True
    return make_record


def configure() -> None:
    global _configured
    if _configured:
        return
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "stamps_request_id", False):
        logging.setLogRecordFactory(_stamp_request_id(factory))
    logging.getLogger("house").setLevel(logging.INFO)
    _configured = True
