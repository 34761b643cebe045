"""Parsing of request fields into domain values, with the reference document's messages.

Wrong types and out-of-range values become HouseError (400), never exceptions further in.
"""

import re
from decimal import Decimal, InvalidOperation

from core import money
from core.errors import HouseError, invalid, missing_fields

MARKET_ID_RE = re.compile(r"^[A-Za-z0-9_\-:.]{1,128}$")
MAX_TEXT = 500
# Characters no text input of the house may carry, whatever the field: the C0 controls but tab, line
# feed and carriage return, DEL, and lone UTF-16 surrogates (JSON's "\ud800" escape decodes to one).
# PostgreSQL refuses NUL in text and JSON columns and a surrogate cannot be encoded to UTF-8, so
# either would fail deep inside a write (a 500) instead of here (a 400).
UNSAFE_TEXT_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
# No request body of the API nests deeper than a few levels; a deeper one is refused before any code
# walks it recursively (the idempotency fingerprint, a serializer).
MAX_JSON_DEPTH = 32
# A number literal longer than this is refused by the JSON parser: money has 14 digits and 6 places.
MAX_NUMBER_LENGTH = 40


def unsafe_text() -> HouseError:
    return HouseError("Control characters are not allowed", code="invalid_characters")


def require_safe_text(value: str) -> str:
    if UNSAFE_TEXT_RE.search(value):
        raise unsafe_text()
    return value


def require_safe_json(data) -> None:
    """Every string (keys too) of a parsed body free of unsafe characters, and the nesting at most
    MAX_JSON_DEPTH deep; walked without recursion."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            require_safe_text(value)
        elif isinstance(value, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise HouseError("JSON nested too deeply", code="json_too_deep")
            if isinstance(value, dict):
                stack.extend((key, depth) for key in value)
                stack.extend((item, depth + 1) for item in value.values())
            else:
                stack.extend((item, depth + 1) for item in value)


def require_object(data) -> dict:
    if not isinstance(data, dict):
        raise HouseError("Request body must be a JSON object", code="invalid_body")
    return data


def require_fields(data: dict, *names: str) -> None:
    if any(data.get(name) in (None, "") for name in names):
        raise missing_fields()


def decimal_field(value, field: str) -> Decimal:
    """A JSON number or a decimal string; booleans, NaN and infinities are refused."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        raise invalid(field)
    if isinstance(value, float):  # only reachable if a caller bypassed the Decimal parser
        raise invalid(field)
    if isinstance(value, str):
        value = value.strip()
        if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", value):
            raise invalid(field)
    try:
        number = money.to_decimal(value)
    except (ValueError, TypeError, InvalidOperation):
        raise invalid(field) from None
    if not number.is_finite() or abs(number) > money.MAX_AMOUNT:
        raise invalid(field)
    return number


def amount_field(value, *, places: int) -> Decimal:
    amount = decimal_field(value, "amount")
    if amount <= 0:
        raise HouseError("Amount must be positive", code="amount_not_positive")
    if -amount.as_tuple().exponent > places and amount != amount.quantize(Decimal(1).scaleb(-places)):
        raise HouseError(f"Amount must have at most {places} decimal places", code="amount_precision")
    return amount.quantize(Decimal(1).scaleb(-places))


def mid_price_field(value) -> Decimal:
    mid = decimal_field(value, "midPrice")
    if not (Decimal("0") < mid < Decimal("100")):
        raise HouseError("Invalid midPrice", code="invalid_midprice", extra={"reason": "midPrice must be between 0 and 100 (exclusive)"})
    if mid != money.price(mid):
        raise HouseError("Invalid midPrice", code="invalid_midprice", extra={"reason": "at most 4 decimal places"})
    return mid


def choice_field(value, field: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise invalid(field)
    return value


def market_id_field(value) -> str:
    if not isinstance(value, str) or not MARKET_ID_RE.match(value):
        raise invalid("marketId")
    return value


def text_field(value, field: str, *, max_length: int = MAX_TEXT) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > max_length:
        raise invalid(field)
    return value


def uuid_field(value, field: str):
    import uuid

    if not isinstance(value, str):
        raise invalid(field)
    try:
        return uuid.UUID(value)
    except ValueError:
        raise invalid(field) from None


def pattern_field(value, field: str, pattern: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        raise invalid(field)
    return value
