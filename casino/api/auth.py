"""Who is calling: a player (session bearer token), house staff (staff bearer token) or an
operator (X-Operator-Key). Permissions turn a wrong kind of caller into 401/403."""

from dataclasses import dataclass

from rest_framework import authentication, permissions

from casino.models import Operator, Player
from casino.services import credentials


@dataclass(frozen=True)
class PlayerPrincipal:
    player: Player
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
    operator: Operator
    is_authenticated: bool = True

    @property
    def rate_key(self) -> str:
        return f"operator:{self.operator.pk}"


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Authorization: Bearer <token>; the token's prefix says whether it is a player's or staff's."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise authentication.exceptions.AuthenticationFailed()
        if token.startswith(credentials.SESSION_TOKEN_PREFIX):
            player = credentials.session_player(token)
            if player is not None:
                return PlayerPrincipal(player), token
        elif token.startswith(credentials.STAFF_TOKEN_PREFIX):
            user = credentials.staff_by_token(token)
            if user is not None:
                return StaffPrincipal(user), token
        raise authentication.exceptions.AuthenticationFailed()

    def authenticate_header(self, request):
        return "Bearer"


class OperatorKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        key = request.META.get("HTTP_X_OPERATOR_KEY")
        if key is None:
            return None
        operator = credentials.operator_by_key(key.strip())
        if operator is None:
            raise authentication.exceptions.AuthenticationFailed()
        return OperatorPrincipal(operator), key

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
