"""JSON in and out with exact decimals: numbers parse to Decimal, Decimals render as numbers."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import simplejson
from rest_framework.exceptions import ParseError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number")


class DecimalJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            raw = stream.read() if stream is not None else b""
            data = json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ParseError("Malformed JSON") from exc
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
