"""seed_demo: a demo operator, players with balances, markets with reference prices, keys printed.

Safe to run again: it adds a fresh API key, staff token and player sessions each time and
refreshes the reference prices (so they are not stale), without duplicating data.
"""

import json
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models import F, OuterRef, Subquery

from casino.models import Market, Operator, ReferencePrice
from casino.services.credentials import operator_create, operator_rotate_key, session_open, staff_token_create
from casino.services.markets import casino_settings, reference_price_set
from wallets.services.balances import wallet_balance
from wallets.services.transfers import wallet_deposit

DEMO_OPERATOR = "Demo Casino"
DEMO_MARKETS = [
    ("0x1234abcd00000000000000000000000000000000000000000000000000000001", "Will Bitcoin hit $100k by June?", "crypto", Decimal("62")),
    (
        "0x1234abcd00000000000000000000000000000000000000000000000000000002",
        "Will the Fed cut rates in September?",
        "economics",
        Decimal("45"),
    ),
    ("0x1234abcd00000000000000000000000000000000000000000000000000000003", "Will Team A win the final?", "sports", Decimal("30")),
]
DEMO_PLAYERS = [("alice", Decimal("100")), ("bob", Decimal("500")), ("carol", Decimal("1000"))]
DEMO_S2S_OPERATOR = "Demo S2S Casino"
DEMO_S2S_PLAYERS = ["dave", "erin"]


class Command(BaseCommand):
    help = "Seed a demo operator, players, markets and prices; print keys and tokens as JSON."

    def add_arguments(self, parser):
        parser.add_argument(
            "--s2s-wallet-url", default="", help="Also seed an s2s operator whose wallet server is at this URL (e.g. the reference server)."
        )
        parser.add_argument("--admin-password", default="", help="Also create/update a Django admin superuser 'admin' with this password.")
        parser.add_argument(
            "--feed-markets",
            action="store_true",
            help="The markets come from the market-data feed (run market_feed_sync first): list the first listed ones, create none.",
        )
        parser.add_argument(
            "--price-max-age",
            type=int,
            default=None,
            help="Seconds a reference price stays fresh (demo: a day, so the README examples work without a price feed).",
        )

    def handle(self, *args, admin_password, price_max_age, s2s_wallet_url, feed_markets, **options):
        with transaction.atomic():
            operator = Operator.objects.filter(name=DEMO_OPERATOR).first()
            if operator is None:
                issued = operator_create(name=DEMO_OPERATOR, wallet_mode="internal", currency="USD")
                operator, api_key = issued.operator, issued.api_key
            else:
                api_key = operator_rotate_key(operator=operator)
            if price_max_age is not None:
                settings_row = casino_settings()
                settings_row.price_max_age_seconds = price_max_age
                settings_row.save(update_fields=["price_max_age_seconds", "updated_at"])
            if feed_markets:
                markets = self._feed_markets()
            else:
                for market_id, title, category, mid in DEMO_MARKETS:
                    reference_price_set(market_id=market_id, outcome="yes", mid_price=mid, title=title, category=category)
                markets = [{"marketId": m, "title": t, "category": c, "yesMid": str(p)} for m, t, c, p in DEMO_MARKETS]
            players = {}
            for external_id, balance in DEMO_PLAYERS:
                session = session_open(operator=operator, external_player_id=external_id)
                current = wallet_balance(player=session.player)
                if current < balance:
                    wallet_deposit(player=session.player, amount=balance - current)
                players[external_id] = {"userId": str(session.player.pk), "token": session.token, "balance": str(max(current, balance))}
            s2s = self._seed_s2s(s2s_wallet_url) if s2s_wallet_url else None
            staff_token = staff_token_create(username="demo-staff")
            if admin_password:
                User = get_user_model()
                admin, _ = User.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
                admin.is_staff = admin.is_superuser = True
                admin.set_password(admin_password)
                admin.save()
        self.stdout.write(
            json.dumps(
                {
                    "operatorId": str(operator.pk),
                    "operatorApiKey": api_key,
                    "staffToken": staff_token,
                    "players": players,
                    "markets": markets,
                    **({"s2s": s2s} if s2s else {}),
                },
                indent=2,
            )
        )

    @staticmethod
    def _feed_markets() -> list[dict]:
        """Three listed, priced markets of the feed's catalogue, the most liquid first."""
        prices = ReferencePrice.objects.filter(market=OuterRef("pk"), outcome="yes").values("mid_price")[:1]
        listed = (
            Market.objects.filter(listed=True, status="open", suspended_reason="")
            .annotate(yes_mid=Subquery(prices))
            .filter(yes_mid__gte=10, yes_mid__lte=90)
            .order_by(F("liquidity").desc(nulls_last=True), "id")[:3]
        )
        return [{"marketId": m.pk, "title": m.title, "category": m.category, "yesMid": str(m.yes_mid)} for m in listed]

    def _seed_s2s(self, wallet_url: str) -> dict:
        """An operator holding its players' money in its own wallet server (SPEC §9)."""
        from wallets.services.operator_wallet import operator_wallet_configure

        operator = Operator.objects.filter(name=DEMO_S2S_OPERATOR).first()
        if operator is None:
            issued = operator_create(name=DEMO_S2S_OPERATOR, wallet_mode="s2s", currency="USD", wallet_url=wallet_url)
            operator, api_key, secret = issued.operator, issued.api_key, issued.wallet_secret
        else:
            api_key = operator_rotate_key(operator=operator)
            secret = operator_wallet_configure(operator=operator, base_url=wallet_url)
        players = {}
        for external_id in DEMO_S2S_PLAYERS:
            session = session_open(operator=operator, external_player_id=external_id)
            players[external_id] = {"userId": str(session.player.pk), "token": session.token}
        return {
            "operatorId": str(operator.pk),
            "operatorApiKey": api_key,
            "walletUrl": wallet_url,
            "walletSecret": secret,
            "players": players,
        }
