"""The kernel's keyset pagination: every row exactly once, in order, ties included; rows added
while a client pages neither repeat nor shift the pages; bad limits and cursors are 400s."""

from datetime import timedelta

import pytest
from django.http import QueryDict
from django.utils import timezone

from core.api.pagination import PageParams, keyset_page, page_params
from core.errors import HouseError
from core.models import IdempotencyRecord

pytestmark = pytest.mark.django_db
NEWEST_FIRST = ("-created_at", "-id")


def records(count: int, *, same_time_every: int = 3):
    """``count`` rows whose created_at values repeat in groups (ties the id must break)."""
    start = timezone.now() - timedelta(days=1)
    rows = IdempotencyRecord.objects.bulk_create(
        [IdempotencyRecord(scope="s", key=f"k{i}", request_hash="h", status_code=200, response_body="{}") for i in range(count)]
    )
    for i, row in enumerate(rows):
        IdempotencyRecord.objects.filter(pk=row.pk).update(created_at=start + timedelta(seconds=i // same_time_every))
    return list(IdempotencyRecord.objects.order_by(*NEWEST_FIRST).values_list("pk", flat=True))


def walk(limit: int, ordering=NEWEST_FIRST, scope="test") -> list[list[int]]:
    pages, cursor = [], None
    while True:
        page = keyset_page(IdempotencyRecord.objects.all(), ordering=ordering, params=PageParams(limit, cursor), scope=scope)
        pages.append([row.pk for row in page.items])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def test_pages_hold_every_row_once_in_order_with_ties_broken_by_id():
    expected = records(25)
    pages = walk(limit=4)
    assert [len(p) for p in pages] == [4, 4, 4, 4, 4, 4, 1]
    assert sum(pages, []) == expected


def test_the_last_full_page_has_no_next_cursor():
    records(8)
    assert [len(p) for p in walk(limit=4)] == [4, 4]


def test_oldest_first_works_the_same_way():
    expected = records(10)
    assert sum(walk(limit=3, ordering=("created_at", "id")), []) == list(reversed(expected))


def test_rows_added_while_paging_do_not_shift_the_pages():
    expected = records(10)
    first = keyset_page(IdempotencyRecord.objects.all(), ordering=NEWEST_FIRST, params=PageParams(4, None), scope="test")
    IdempotencyRecord.objects.create(scope="s", key="newer", request_hash="h", status_code=200, response_body="{}")
    rest = keyset_page(IdempotencyRecord.objects.all(), ordering=NEWEST_FIRST, params=PageParams(100, first.next_cursor), scope="test")
    assert [r.pk for r in first.items] + [r.pk for r in rest.items] == expected


@pytest.mark.parametrize("cursor", ["garbage", "a:b:c", "x" * 50, "eyJhIjoxfQ"])
def test_a_cursor_that_was_not_issued_is_refused(cursor):
    records(3)
    with pytest.raises(HouseError) as refused:
        keyset_page(IdempotencyRecord.objects.all(), ordering=NEWEST_FIRST, params=PageParams(2, cursor), scope="test")
    assert refused.value.body() == {"error": "Invalid cursor", "code": "invalid_cursor"} and refused.value.status == 400


def test_a_cursor_from_another_listing_is_refused():
    records(3)
    page = keyset_page(IdempotencyRecord.objects.all(), ordering=NEWEST_FIRST, params=PageParams(1, None), scope="operator.trades")
    with pytest.raises(HouseError, match="Invalid cursor"):
        keyset_page(IdempotencyRecord.objects.all(), ordering=NEWEST_FIRST, params=PageParams(1, page.next_cursor), scope="operator.events")


@pytest.mark.parametrize(
    ("query", "limit"),
    [("", 100), ("limit=1", 1), ("limit=250", 250), ("limit=5000", 1000), ("limit=", 100)],
)
def test_limit_defaults_and_is_capped(query, limit):
    assert page_params(QueryDict(query)).limit == limit


@pytest.mark.parametrize("query", ["limit=0", "limit=-1", "limit=abc", "limit=1.5", "limit=%C2%B2", "limit=1e3"])
def test_a_limit_that_is_not_a_positive_integer_is_refused(query):
    with pytest.raises(HouseError) as refused:
        page_params(QueryDict(query))
    assert refused.value.body() == {"error": "Invalid limit", "code": "invalid_limit"}
