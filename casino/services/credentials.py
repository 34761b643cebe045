"""Operator API keys, player session tokens and staff tokens: issue, hash, look up.

Only sha256 hashes are stored; a key or token is shown once, when it is issued.
Prefixes tell the kinds apart so a bearer token costs one indexed look-up.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from casino.models import Operator, Player, PlayerSession, PlayerStatus, StaffToken, WalletMode
from casino.services.markets import market_prefetch_statement, market_prefetch_store
from casino.services.player_controls import player_blocked
from core.api.auth import OperatorPrincipal, PlayerPrincipal, StaffPrincipal
from core.prepared import PreparedStatement, statement_cursor

OPERATOR_KEY_PREFIX = "op_"
SESSION_TOKEN_PREFIX = "ps_"
STAFF_TOKEN_PREFIX = "st_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class IssuedOperator:
    operator: Operator
    api_key: str
    wallet_secret: str


def operator_create(*, name: str, wallet_mode: str = WalletMode.INTERNAL, currency: str = "USD", wallet_url: str = "") -> IssuedOperator:
    from wallets.services.operator_wallet import operator_wallet_configure

    api_key = _new_secret(OPERATOR_KEY_PREFIX)
    with transaction.atomic():
        operator = Operator.objects.create(
            name=name, wallet_mode=wallet_mode, currency=currency.upper(), api_key_hash=token_hash(api_key), api_key_prefix=api_key[:10]
        )
        wallet_secret = operator_wallet_configure(operator=operator, base_url=wallet_url)
    return IssuedOperator(operator=operator, api_key=api_key, wallet_secret=wallet_secret)


def operator_rotate_key(*, operator: Operator) -> str:
    api_key = _new_secret(OPERATOR_KEY_PREFIX)
    Operator.objects.filter(pk=operator.pk).update(api_key_hash=token_hash(api_key), api_key_prefix=api_key[:10])
    operator.api_key_hash, operator.api_key_prefix = token_hash(api_key), api_key[:10]
    return api_key


def operator_by_key(api_key: str) -> Operator | None:
    if not api_key.startswith(OPERATOR_KEY_PREFIX) or len(api_key) > 200:
        return None
    return Operator.objects.filter(api_key_hash=token_hash(api_key), is_active=True).first()


@dataclass(frozen=True)
class IssuedSession:
    token: str
    player: Player
    expires_at: datetime


def session_open(*, operator: Operator, external_player_id: str, currency: str | None = None, tier: str | None = None) -> IssuedSession:
    """Open a session for the operator's player, creating the player (and wallet) on first use.

    A player the operator blocked gets no new session (400 Player blocked); sessions opened
    before the block keep working for what a blocked player may still do (sell, read)."""
    from wallets.services.balances import wallet_ensure

    with transaction.atomic():
        player, created = Player.objects.get_or_create(
            operator=operator,
            external_id=external_player_id,
            defaults={"currency": (currency or operator.currency).upper(), "tier": tier or "standard"},
        )
        if player.status == PlayerStatus.BLOCKED:
            raise player_blocked()
        if not created and tier and player.tier != tier:
            Player.objects.filter(pk=player.pk).update(tier=tier)
            _tier_change_record(player=player, to_tier=tier, operator=operator)
            player.tier = tier
        if operator.wallet_mode == WalletMode.INTERNAL:
            wallet_ensure(player=player)
        token = _new_secret(SESSION_TOKEN_PREFIX)
        expires_at = timezone.now() + timedelta(seconds=settings.HOUSE_SESSION_TTL_SECONDS)
        PlayerSession.objects.create(token_hash=token_hash(token), player=player, expires_at=expires_at)
    return IssuedSession(token=token, player=player, expires_at=expires_at)


_SESSION_SQL = """
SELECT p.id, p.operator_id, p.external_id, p.tier, p.currency, p.total_wagered,
       p.status, p.max_stake_per_trade, p.max_daily_stake, p.max_daily_loss, p.created_at,
       o.name, o.api_key_hash, o.api_key_prefix, o.wallet_mode, o.currency, o.created_at,
       rp.sharp_score, rp.markout_edge, rp.results_edge, rp.trades_scored, rp.computed_at,
       ol.trading_enabled, ol.max_open_exposure, ol.max_daily_turnover, ol.max_daily_net_loss, ol.operator_id
  FROM casino_player_sessions s
  JOIN casino_players p ON p.id = s.player_id
  JOIN casino_operators o ON o.id = p.operator_id AND o.is_active
  LEFT JOIN risk_player_profiles rp ON rp.player_id = p.id
  LEFT JOIN risk_operator_limits ol ON ol.operator_id = o.id
 WHERE s.token_hash = %(token)s AND s.expires_at > %(now)s
"""
# The player's own controls (status, the operator's limits) come with it: the walls read them on
# every trade without a query of their own. Model.from_db takes the values in the model's field
# order (casino.models.Player), whatever the order of the names.
_SESSION_PLAYER_FIELDS = [
    "id", "operator_id", "external_id", "tier", "currency", "total_wagered",
    "status", "max_stake_per_trade", "max_daily_stake", "max_daily_loss", "created_at",
]  # fmt: skip
_SESSION = PreparedStatement("session_player", _SESSION_SQL, token="varchar", now="timestamptz")


def session_player(token: str) -> Player | None:
    """The player of a live session, with its operator, risk profile and operator limits loaded.

    Every authenticated request runs this, so on PostgreSQL it is one narrow query whose
    rows become model instances directly (the ORM's select_related builds four full models
    and costs a few milliseconds of CPU per request)."""
    if connection.vendor != "postgresql":
        session = (
            PlayerSession.objects.select_related("player__operator__risk_limit", "player__risk_profile")
            .filter(token_hash=token_hash(token), expires_at__gt=timezone.now(), player__operator__is_active=True)
            .first()
        )
        return session.player if session else None
    sql, params = _SESSION.text(), {"token": token_hash(token), "now": timezone.now()}
    market = market_prefetch_statement()  # a trade request's market, in this same round trip
    if market is not None:
        sql, params = f"{sql};{market[0]}", {**params, **market[1]}
    with statement_cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
        if market is not None:
            cursor.nextset()
            market_prefetch_store(cursor.fetchone())
    if row is None:
        return None
    from risk.models import OperatorRiskLimit, PlayerRiskProfile

    operator = Operator.from_db(
        "default",
        ["id", "name", "api_key_hash", "api_key_prefix", "wallet_mode", "currency", "is_active", "created_at"],
        [row[1], row[11], row[12], row[13], row[14], row[15], True, row[16]],
    )
    player = Player.from_db("default", _SESSION_PLAYER_FIELDS, list(row[0:11]))
    player.operator = operator
    profile = None
    if row[17] is not None:
        profile = PlayerRiskProfile.from_db(
            "default", ["player_id", "sharp_score", "markout_edge", "results_edge", "trades_scored", "computed_at"], [row[0], *row[17:22]]
        )
    Player._meta.get_field("risk_profile").set_cached_value(player, profile)
    limit = None
    if row[26] is not None:
        limit = OperatorRiskLimit.from_db(
            "default",
            ["operator_id", "trading_enabled", "max_open_exposure", "max_daily_turnover", "max_daily_net_loss"],
            [row[26], *row[22:26]],
        )
    Operator._meta.get_field("risk_limit").set_cached_value(operator, limit)
    return player


def staff_token_create(*, username: str) -> str:
    User = get_user_model()
    with transaction.atomic():
        user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True})
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        elif not user.is_staff:
            User.objects.filter(pk=user.pk).update(is_staff=True)
        token = _new_secret(STAFF_TOKEN_PREFIX)
        StaffToken.objects.create(token_hash=token_hash(token), user=user)
    return token


def staff_by_token(token: str):
    row = (
        StaffToken.objects.select_related("user")
        .filter(token_hash=token_hash(token), revoked=False, user__is_active=True, user__is_staff=True)
        .first()
    )
    return row.user if row else None


# -- what the kernel's authentication asks (registered in casino/apps.py) ------------------------


def player_principal(token: str) -> PlayerPrincipal | None:
    player = session_player(token)
    return PlayerPrincipal(player) if player is not None else None


def staff_principal(token: str) -> StaffPrincipal | None:
    user = staff_by_token(token)
    return StaffPrincipal(user) if user is not None else None


def operator_principal(api_key: str) -> OperatorPrincipal | None:
    operator = operator_by_key(api_key)
    return OperatorPrincipal(operator) if operator is not None else None


def _tier_change_record(*, player: Player, to_tier: str, operator: Operator) -> None:
    """Issue 14 (SPEC §16): a tier set by the operator when opening a session is an operator
    override, recorded like PATCH operator/players/{id}."""
    from risk.models import TierChangeSource, tier_change_record

    tier_change_record(
        player_ids=[player.pk], from_tier=player.tier, to_tier=to_tier, source=TierChangeSource.OPERATOR, actor=f"operator:{operator.pk}"
    )
