"""The base API view: per-user rate limit headers, idempotent execution, exact JSON."""

from django.db import IntegrityError
from django.http import HttpResponse
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.inputs import require_safe_text
from core.api.rendering import JSONNegotiation, dumps
from core.api.throttling import PerUserRateThrottle
from core.errors import HouseError
from core.idempotency import (
    IN_PROGRESS,
    MAX_KEY_LENGTH,
    IdempotencySlot,
    idempotency_lookup,
    request_fingerprint,
)


class HouseAPIView(APIView):
    throttle_classes = [PerUserRateThrottle]
    content_negotiation_class = JSONNegotiation
    rate_group: str = ""
    rate: str | None = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.check_request_text(request, kwargs)

    @staticmethod
    def check_request_text(request, path_params: dict) -> None:
        """The query string, the path's parameters and the headers the house stores (Idempotency-Key)
        hold no control characters: a 400 here, for every endpoint, not a 500 from the database.
        (JSON bodies are checked by the parser.) Read from the WSGI environ: building the query
        dict and the headers' mapping for a request that has neither cost more than the checks."""
        meta = request._request.META
        if meta.get("QUERY_STRING"):
            for key, values in request.query_params.lists():
                require_safe_text(key)
                for value in values:
                    require_safe_text(value)
        for value in path_params.values():
            if isinstance(value, str):
                require_safe_text(value)
        require_safe_text(meta.get("HTTP_IDEMPOTENCY_KEY", ""))

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in getattr(self, "rate_headers", {}).items():
            response[name] = value
        return response

    def run_idempotent(self, request, *, execute, render_body, status_code: int = 200):
        """Run ``execute(slot)`` once per Idempotency-Key; replay the stored response after that.

        ``render_body(result)`` builds the response body; the service stores it inside
        its own transaction through ``slot.record(result)``.
        """
        key = request._request.META.get("HTTP_IDEMPOTENCY_KEY")
        if key is None:
            return Response(render_body(execute(None)), status=status_code)
        if not key or len(key) > MAX_KEY_LENGTH:
            raise HouseError("Invalid Idempotency-Key", code="invalid_idempotency_key")
        scope = f"{request.user.rate_key}:{request.method}:{request.path}"
        fingerprint = request_fingerprint(dumps(request.data if request.data is not None else {}))
        stored = idempotency_lookup(scope=scope, key=key)
        if stored is not None:
            return self._replay(stored, fingerprint)
        slot = IdempotencySlot(
            scope=scope, key=key, request_hash=fingerprint, render=lambda result: (status_code, dumps(render_body(result)))
        )
        try:
            execute(slot)
        except IntegrityError:
            stored = idempotency_lookup(scope=scope, key=key)
            if stored is None:
                raise
            return self._replay(stored, fingerprint)
        return self._raw(slot.stored.response_body, slot.stored.status_code)

    def _replay(self, stored, fingerprint: str):
        if stored.status_code == IN_PROGRESS:
            raise HouseError("A request with this Idempotency-Key is in progress", code="idempotency_in_progress", status=409)
        if stored.request_hash != fingerprint:
            raise HouseError("Idempotency-Key already used with a different request", code="idempotency_key_reused", status=409)
        response = self._raw(stored.response_body, stored.status_code)
        response["Idempotent-Replayed"] = "true"
        return response

    @staticmethod
    def _raw(body: str, status_code: int) -> HttpResponse:
        return HttpResponse(body, status=status_code, content_type="application/json")
