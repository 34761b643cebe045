"""The one exception type for business refusals, rendered as {"error": ..., "code": ...}."""


class HouseError(Exception):
    """A refusal the client should see: the reference document's message, a stable code."""

    def __init__(self, message: str, *, code: str, status: int = 400, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.extra = extra or {}

    def body(self) -> dict:
        return {"error": self.message, "code": self.code, **self.extra}


def missing_fields() -> HouseError:
    return HouseError("Missing required fields", code="missing_fields")


def invalid(field: str, message: str | None = None) -> HouseError:
    return HouseError(message or f"Invalid {field}", code=f"invalid_{field.lower()}")


def market_not_tradeable(reason: str) -> HouseError:
    return HouseError("Market not tradeable", code="market_not_tradeable", extra={"reason": reason})


def market_suspended(code: str) -> HouseError:
    """The market-data feed stopped the market (SPEC §11): the code says why."""
    return HouseError("Market not tradeable", code=code, extra={"reason": code})


def price_moved(reason: str) -> HouseError:
    return HouseError("Price moved", code="price_moved", extra={"reason": reason})


def insufficient_balance() -> HouseError:
    return HouseError("Insufficient balance", code="insufficient_balance")


def insufficient_shares() -> HouseError:
    return HouseError("Insufficient shares", code="insufficient_shares")


def exposure_cap_reached() -> HouseError:
    return HouseError("Market exposure cap reached", code="risk.exposure.market_cap")


class ConcurrentUpdate(Exception):
    """An optimistic write lost a race; the caller retries the whole unit of work."""
