"""core.arrays: a column of values bound as one PostgreSQL array literal comes back exactly."""

import uuid
from decimal import Decimal

import pytest
from django.db import connection

from core.arrays import pg_array
from tests.conftest import requires_postgres

pytestmark = pytest.mark.django_db


@requires_postgres
def test_values_come_back_exactly():
    texts = ["plain", "", "NULL", 'a "quoted" word', "back\\slash", "{braces}, commas", "tab\tand\nnewline", "ünïcödé €", None]
    ids = [uuid.uuid4(), None, uuid.uuid4()]
    amounts = [Decimal("1E+2"), Decimal("0.00"), Decimal("-12.345678"), Decimal("123456789012.34")]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT %s::varchar[], %s::uuid[], %s::numeric[], %s::int[]",
            [pg_array(texts), pg_array(ids), pg_array(amounts), pg_array([1, 0])],
        )
        got = cursor.fetchone()
    assert got[0] == texts and got[1] == ids and got[3] == [1, 0]
    only_texts, nulls = [t for t in texts if t is not None], [None, None]
    with connection.cursor() as cursor:  # columns of one type take the fast paths
        cursor.execute("SELECT %s::varchar[], %s::uuid[], %s::numeric[]", [pg_array(only_texts), pg_array(nulls), pg_array(amounts[1:])])
        assert cursor.fetchone() == (only_texts, nulls, amounts[1:])
    assert got[2] == amounts and [str(a) for a in got[2]] == ["100", "0.00", "-12.345678", "123456789012.34"]


def test_anything_else_is_refused():
    with pytest.raises(TypeError):
        pg_array([1.5])
    with pytest.raises(TypeError):
        pg_array([True])
    with pytest.raises(ValueError):
        pg_array([Decimal("NaN")])
