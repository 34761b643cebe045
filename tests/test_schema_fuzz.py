"""Schema fuzzing in `make test` (SPEC §15): a short, derandomized schemathesis run over every
operation of the served document, with real credentials, in-process. `make fuzz` runs the long one
against gunicorn (bench/fuzz.py)."""

import os

import pytest
import schemathesis

from config.wsgi import application
from tests.fuzzing import fuzz, seed_house

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_rate_limits")
def test_every_operation_answers_as_documented_to_generated_requests():
    credentials = seed_house()
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
    report = fuzz(schema, credentials, send=lambda case, headers: case.call(headers=headers), examples=EXAMPLES, seed=0, progress=print)
    print(report.summary())
    if os.environ.get("FUZZ_SAMPLES"):
        print("\n".join(f"{key}: {curl}" for key, curl in report.samples.items()))
    assert len(report.operations) >= 30
    assert report.findings == {}, report.summary()
    assert report.server_errors == 0
