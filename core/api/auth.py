"""Who is calling: a player (session bearer token), house staff (staff bearer token) or an
operator (X-Operator-Key). Permissions turn a wrong kind of caller into 401/403.

The kernel knows the kinds of caller, not where their credentials live: the app that owns
them registers a resolver at start-up (casino's AppConfig.ready):

    register_bearer_token(prefix, resolve)   resolve(token) -> a principal, or None
    register_operator_key(resolve)           resolve(key) -> an OperatorPrincipal, or None

A bearer token's prefix says which resolver looks it up, so a token costs one look-up.
"""

from collections.abc import Callable
from dataclasses import dataclass

from rest_framework import authentication, permissions


@dataclass(frozen=True)
class PlayerPrincipal:
    player: object
    is_authenticated: bool = True

    @property
    def rate_key(self) -> str:
        return f"player:{self.player.pk}"


@dataclass(frozen=True)
class StaffPrincipal:
    user: object
    is_authenticated: bool = True

    @property
    def rate_key(self) -> str:
        return f"staff:{self.user.pk}"


@dataclass(frozen=True)
class OperatorPrincipal:
    operator: object
    is_authenticated: bool = True

    @property
    def rate_key(self) -> str:
        return f"operator:{self.operator.pk}"


Principal = PlayerPrincipal | StaffPrincipal | OperatorPrincipal
_bearer_resolvers: dict[str, Callable[[str], Principal | None]] = {}
_operator_key_resolver: list[Callable[[str], OperatorPrincipal | None]] = []


def register_bearer_token(prefix: str, resolve: Callable[[str], Principal | None]) -> None:
    """``prefix`` ends with the token's first underscore (``ps_``)."""
    if not prefix.endswith("_") or "_" in prefix[:-1]:
        raise ValueError(f"a bearer token prefix ends with its only underscore: {prefix!r}")
    _bearer_resolvers[prefix] = resolve


def register_operator_key(resolve: Callable[[str], OperatorPrincipal | None]) -> None:
    _operator_key_resolver[:] = [resolve]


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Authorization: Bearer <token>; the token's prefix picks the resolver."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise authentication.exceptions.AuthenticationFailed()
        kind, underscore, _ = token.partition("_")
        resolve = _bearer_resolvers.get(kind + underscore)
        principal = resolve(token) if resolve is not None else None
        if principal is None:
            raise authentication.exceptions.AuthenticationFailed()
        return principal, token

    def authenticate_header(self, request):
        return "Bearer"


class OperatorKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        key = request.META.get("HTTP_X_OPERATOR_KEY")
        if key is None:
            return None
        principal = _operator_key_resolver[0](key.strip()) if _operator_key_resolver else None
        if principal is None:
            raise authentication.exceptions.AuthenticationFailed()
        return principal, key

    def authenticate_header(self, request):
        return "X-Operator-Key"


class IsPlayer(permissions.BasePermission):
    def has_permission(self, request, view):
        if request.user is None:
            return False
        if not isinstance(request.user, PlayerPrincipal):
            raise permissions.exceptions.PermissionDenied("Player session required")
        return True


class IsStaff(permissions.BasePermission):
    message = "Admin access required"

    def has_permission(self, request, view):
        if request.user is None:
            return False
        if not isinstance(request.user, StaffPrincipal):
            raise permissions.exceptions.PermissionDenied(self.message)
        return True


class IsOperator(permissions.BasePermission):
    def has_permission(self, request, view):
        if request.user is None:
            return False
        if not isinstance(request.user, OperatorPrincipal):
            raise permissions.exceptions.PermissionDenied("Operator key required")
        return True
