"""Reading many rows to print them: uuid columns handed over as their text.

A page of 1,000 rows has thousands of uuid values that the API prints as text; psycopg would build
a ``uuid.UUID`` for each and the presenter turn it back into a string, a fifth of the CPU of such a
page. Inside ``uuids_as_text()`` the queries this thread runs on PostgreSQL load uuid columns as
``str`` (only those cursors: the connection's other users still get UUIDs). Presenters call
``str()`` on ids, so they render the same either way; elsewhere (SQLite) nothing changes.
"""

from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, connections


def _text_uuids(execute, sql, params, many, context):
    from psycopg.types.string import TextLoader

    context["cursor"].cursor.adapters.register_loader("uuid", TextLoader)
    return execute(sql, params, many, context)


@contextmanager
def uuids_as_text(*, using: str = DEFAULT_DB_ALIAS):
    """On the database ``using`` (a queryset's ``.db``: the replica when reads are routed there)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        yield
        return
    with connection.execute_wrapper(_text_uuids):
        yield
