"""JSON in and out with exact decimals: numbers parse to Decimal, Decimals render as numbers."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import simplejson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer

from core.api.inputs import MAX_NUMBER_LENGTH, require_safe_json
from core.errors import HouseError


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number")


def _number_too_long() -> HouseError:
    return HouseError("Number too long", code="number_too_long")


def _parse_decimal(literal: str) -> Decimal:
    if len(literal) > MAX_NUMBER_LENGTH:
        raise _number_too_long()
    return Decimal(literal)


def _parse_int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_LENGTH:
        raise _number_too_long()
    return int(literal)


class DecimalJSONParser(JSONParser):
    """The one JSON parser of the API: exact numbers, and what no field may hold refused here, for
    every endpoint at once (core.api.inputs.require_safe_json): control characters, lone surrogates,
    deep nesting, number literals beyond any amount."""

    def parse(self, stream, media_type=None, parser_context=None):
        # DRF hands the parser the raw stream, past Django's own DATA_UPLOAD_MAX_MEMORY_SIZE check of
        # request.body: the same limit is kept here, reading no more than one byte past it.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = (stream.read(limit + 1) if limit is not None else stream.read()) if stream is not None else b""
        if limit is not None and len(raw) > limit:
            raise HouseError("Request body too large", code="body_too_large", status=413)
        try:
            data = json.loads(raw.decode("utf-8"), parse_float=_parse_decimal, parse_int=_parse_int, parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ParseError("Malformed JSON") from exc
        require_safe_json(data)
        return data


def dumps(data) -> str:
    return simplejson.dumps(data, use_decimal=True, separators=(",", ":"), ensure_ascii=False)


class DecimalJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        return dumps(data).encode("utf-8")


class JSONNegotiation(DefaultContentNegotiation):
    """The house API has one renderer: every answer is JSON, whatever the Accept header says,
    without parsing Accept on every request. Parsers are still chosen by Content-Type."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def iso(dt: datetime) -> str:
    """UTC, milliseconds (truncated), "Z": 2026-06-11T23:20:05.145Z (isoformat: half the time of strftime, and
    a page of 1,000 rows prints 1,000 of them)."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
