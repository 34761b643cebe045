"""Keyset pagination for list endpoints: ``limit`` and an opaque ``cursor`` in, ``nextCursor`` out.

A page is read with a WHERE on the ordering columns after the last row of the previous page
(never OFFSET), so page 1,000 costs what page 1 costs and rows inserted meanwhile neither
repeat nor go missing. The ordering must end in a unique column (``id``) so it is total.

    page = keyset_page(Trade.objects.filter(...), ordering=("-created_at", "-id"),
                       params=page_params(request.query_params), scope="operator.trades")
    return Response({"trades": [present(t) for t in page.items], "nextCursor": page.next_cursor})

The cursor is signed (Django's SECRET_KEY, salted with the listing's scope): a client cannot
craft one or carry it to another listing, and anything that is not a cursor is a 400.
"""

from dataclasses import dataclass

from django.core import signing
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from core.errors import HouseError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class PageParams:
    limit: int
    cursor: str | None


@dataclass(frozen=True)
class Page:
    items: list
    next_cursor: str | None


def invalid_cursor() -> HouseError:
    return HouseError("Invalid cursor", code="invalid_cursor")


def page_params(query_params, *, default_limit: int = DEFAULT_LIMIT, max_limit: int = MAX_LIMIT) -> PageParams:
    """``limit`` (a positive integer, capped at ``max_limit``) and ``cursor`` from the query string."""
    raw = query_params.get("limit")
    if raw is None or raw == "":
        limit = default_limit
    elif not (isinstance(raw, str) and raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise HouseError("Invalid limit", code="invalid_limit")
    else:
        limit = min(int(raw), max_limit)
    cursor = query_params.get("cursor") or None
    if cursor is not None and (not isinstance(cursor, str) or len(cursor) > 1000):
        raise invalid_cursor()
    return PageParams(limit=limit, cursor=cursor)


def keyset_page(queryset: QuerySet, *, ordering: tuple[str, ...], params: PageParams, scope: str) -> Page:
    """One page of ``queryset`` in ``ordering`` ("-created_at", "-id": newest first) after ``params.cursor``."""
    fields = [_field(queryset.model, name) for name in ordering]
    if params.cursor is not None:
        queryset = queryset.filter(_after(ordering, _decode(params.cursor, fields, scope)))
    rows = list(queryset.order_by(*ordering)[: params.limit + 1])
    items = rows[: params.limit]
    more = len(rows) > params.limit
    return Page(items=items, next_cursor=_encode(items[-1], fields, scope) if more else None)


def _field(model, name: str):
    return model._meta.get_field(name.lstrip("-"))


def _after(ordering: tuple[str, ...], values: list) -> Q:
    """Rows strictly after ``values`` in ``ordering``: (a, b) after (x, y) is a > x, or a = x and b > y."""
    condition = Q(pk__in=[])
    for i, name in enumerate(ordering):
        column = name.lstrip("-")
        step = Q(**{f"{column}__{'lt' if name.startswith('-') else 'gt'}": values[i]})
        for earlier, value in zip(ordering[:i], values[:i], strict=True):
            step &= Q(**{earlier.lstrip("-"): value})
        condition |= step
    # The same rows, said so that an index on the ordering can start there: the OR above is only
    # a filter to PostgreSQL, and without this bound a deep page would read every row before it.
    first = ordering[0]
    return Q(**{f"{first.lstrip('-')}__{'lte' if first.startswith('-') else 'gte'}": values[0]}) & condition


def _encode(row, fields: list, scope: str) -> str:
    """The cursor after ``row``: a model instance, or a named row of ``values_list(..., named=True)``."""
    values = [_plain(getattr(row, field.attname)) for field in fields]
    return signing.dumps(values, salt=f"house.cursor.{scope}", compress=True)


def _plain(value):
    """A JSON value that the field's to_python reads back exactly (full microseconds; Django's
    JSON encoder would cut timestamps to milliseconds and skip rows)."""
    if value is None or isinstance(value, (int, str)):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _decode(cursor: str, fields: list, scope: str) -> list:
    try:
        raw = signing.loads(cursor, salt=f"house.cursor.{scope}")
    except (signing.BadSignature, ValueError, UnicodeError):
        raise invalid_cursor() from None
    if not isinstance(raw, list) or len(raw) != len(fields):
        raise invalid_cursor()
    try:
        return [field.to_python(value) for field, value in zip(fields, raw, strict=True)]
    except (ValidationError, TypeError, ValueError):
        raise invalid_cursor() from None
