"""The staff admin site: every page renders, keys are shown once, money moves only through the services."""

import re
import uuid
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from casino.models import CasinoSettings, Market, Operator, ReferencePrice, Trade, WalletMode
from casino.services.credentials import operator_create, session_open, token_hash
from casino.services.markets import reference_price_set
from casino.services.trade_executor import TradeRequest, trade_execute
from wallets.models import LedgerEntry, LedgerType, OperatorWallet
from wallets.services.balances import wallet_balance
from wallets.services.transfers import wallet_deposit

MARKET_ID = "0xadmin0000000000000000000000000000000000000000000000000000000001"
API_KEY_RE = re.compile(r"\bop_[A-Za-z0-9_\-]+")


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser(username="alice", email="alice@example.com", password="pw-not-used")
    client.force_login(user)
    return user


@pytest.fixture
def house():
    """An internal-wallet operator with a funded player who has traded once, and an S2S operator."""
    issued = operator_create(name="Lucky Casino", wallet_mode=WalletMode.INTERNAL)
    operator_create(name="Remote Book", wallet_mode=WalletMode.S2S, wallet_url="http://127.0.0.1:9/wallet")
    player = session_open(operator=issued.operator, external_player_id="p-1").player
    wallet_deposit(player=player, amount=Decimal("100.00"))
    reference_price_set(market_id=MARKET_ID, outcome="yes", mid_price=Decimal("62"), title="Will it rain?", category="Weather")
    trade_execute(
        player=player,
        request=TradeRequest(
            market_id=MARKET_ID,
            side="buy",
            outcome="yes",
            amount=Decimal("10"),
            mid_price=Decimal("62"),
            market_title="Will it rain?",
            category="Weather",
            liquidity=Decimal("100000"),
        ),
    )
    return issued.operator, player


def messages_of(response) -> list[str]:
    return [str(m.message) for m in response.context["messages"]]


def _adjust_url(player) -> str:
    return reverse("admin:casino_player_adjust_balance", args=[player.pk])


def _adjust(client, player, **fields):
    data = {"amount": "10.00", "action": "deposit", "description": "", "submission_id": str(uuid.uuid4()), **fields}
    return client.post(_adjust_url(player), data, follow=True)


@pytest.mark.django_db
def test_every_changelist_change_and_add_page_renders_for_a_superuser(client, staff, house):
    assert Trade.objects.exists()
    request = RequestFactory().get("/admin/")
    request.user = staff
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        changelist = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        assert changelist.status_code == 200, f"{opts.label} changelist"
        add = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
        assert add.status_code == (200 if model_admin.has_add_permission(request) else 403), f"{opts.label} add"
        obj = model.objects.first()
        if obj is not None:
            change = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))
            assert change.status_code == 200, f"{opts.label} change"


@pytest.mark.django_db
def test_changelist_searches_and_filters_render(client, staff, house):
    operator, player = house
    pages = [
        ("admin:wallets_ledgerentry_changelist", {"q": player.external_id}),
        ("admin:wallets_ledgerentry_changelist", {"q": str(player.pk)}),
        ("admin:wallets_ledgerentry_changelist", {"type__exact": "deposit", "operator__id__exact": str(operator.pk)}),
        ("admin:casino_trade_changelist", {"q": player.external_id}),
        ("admin:casino_player_changelist", {"q": "p-1", "o": "4"}),
        ("admin:casino_market_changelist", {"q": "rain", "o": "9"}),
        ("admin:casino_marketexposure_changelist", {"o": "5"}),
        ("admin:casino_referenceprice_changelist", {"o": "4"}),
    ]
    for name, params in pages:
        response = client.get(reverse(name), params)
        assert response.status_code == 200, (name, params)
    ledger = client.get(reverse("admin:wallets_ledgerentry_changelist"), {"q": player.external_id})
    assert ledger.context["cl"].result_count == 2  # the deposit and the trade debit


def _trade_as_new_player(operator, external_id: str) -> None:
    player = session_open(operator=operator, external_player_id=external_id).player
    wallet_deposit(player=player, amount=Decimal("50.00"))
    request = TradeRequest(market_id=MARKET_ID, side="buy", outcome="no", amount=Decimal("5"), mid_price=Decimal("38"))
    trade_execute(player=player, request=request)


@pytest.mark.django_db
def test_changelists_do_not_query_per_row(client, staff, house):
    operator, _ = house
    names = [
        "casino_player",
        "casino_trade",
        "casino_position",
        "casino_market",
        "casino_referenceprice",
        "casino_marketexposure",
        "wallets_ledgerentry",
        "wallets_playerwallet",
        "wallets_operatorwallet",
        "casino_operator",
    ]

    def query_counts() -> dict[str, int]:
        counts = {}
        for name in names:
            with CaptureQueriesContext(connection) as queries:
                assert client.get(reverse(f"admin:{name}_changelist")).status_code == 200
            counts[name] = len(queries)
        return counts

    few = query_counts()
    for i in range(4):
        _trade_as_new_player(operator, f"more-{i}")
    reference_price_set(market_id="0xsecond", outcome="yes", mid_price=Decimal("50"))
    assert query_counts() == few


@pytest.mark.django_db
def test_creating_an_operator_shows_its_api_key_once_and_stores_only_the_hash(client, staff):
    form = {"name": "New Book", "wallet_mode": "internal", "currency": "usd", "wallet_url": ""}
    response = client.post(reverse("admin:casino_operator_add"), form, follow=True)
    assert response.status_code == 200
    operator = Operator.objects.get(name="New Book")
    keys = [m for text in messages_of(response) for m in API_KEY_RE.findall(text)]
    assert len(keys) == 1
    assert token_hash(keys[0]) == operator.api_key_hash
    assert operator.currency == "USD"
    assert OperatorWallet.objects.filter(operator=operator).exists()
    again = client.get(reverse("admin:casino_operator_change", args=[operator.pk]))
    assert keys[0] not in again.content.decode()


@pytest.mark.django_db
def test_creating_an_s2s_operator_also_shows_the_wallet_secret(client, staff):
    response = client.post(
        reverse("admin:casino_operator_add"),
        {"name": "Remote", "wallet_mode": "s2s", "currency": "EUR", "wallet_url": "https://wallet.example.com/s2s"},
        follow=True,
    )
    operator = Operator.objects.get(name="Remote")
    secret = operator.wallet_config.secret
    assert any(secret in text for text in messages_of(response))
    assert operator.wallet_config.base_url == "https://wallet.example.com/s2s"


@pytest.mark.django_db
def test_rotate_key_view_asks_first_then_replaces_the_hash(client, staff, house):
    operator, _ = house
    old_hash = operator.api_key_hash
    url = reverse("admin:casino_operator_rotate_key", args=[operator.pk])

    confirmation = client.get(url)
    assert confirmation.status_code == 200
    operator.refresh_from_db()
    assert operator.api_key_hash == old_hash

    response = client.post(url, {"post": "yes"}, follow=True)
    operator.refresh_from_db()
    assert operator.api_key_hash != old_hash
    keys = [m for text in messages_of(response) for m in API_KEY_RE.findall(text)]
    assert [token_hash(k) for k in keys] == [operator.api_key_hash]


@pytest.mark.django_db
def test_rotate_key_action_on_the_changelist(client, staff, house):
    operator, _ = house
    old_hash = operator.api_key_hash
    url = reverse("admin:casino_operator_changelist")
    selection = {"action": "rotate_api_key", "_selected_action": [str(operator.pk)]}

    confirmation = client.post(url, selection)
    assert confirmation.status_code == 200
    assert b"stops working immediately" in confirmation.content
    operator.refresh_from_db()
    assert operator.api_key_hash == old_hash

    response = client.post(url, {**selection, "post": "yes"}, follow=True)
    operator.refresh_from_db()
    keys = [m for text in messages_of(response) for m in API_KEY_RE.findall(text)]
    assert [token_hash(k) for k in keys] == [operator.api_key_hash] != [old_hash]


@pytest.mark.django_db
def test_rotate_wallet_secret_action_shows_the_new_secret(client, staff, house):
    operator, _ = house
    old_secret = operator.wallet_config.secret
    response = client.post(
        reverse("admin:wallets_operatorwallet_changelist"),
        {"action": "rotate_wallet_secret", "_selected_action": [str(operator.pk)], "post": "yes"},
        follow=True,
    )
    new_secret = OperatorWallet.objects.get(operator=operator).secret
    assert new_secret != old_secret
    assert any(new_secret in text for text in messages_of(response))
    page = client.get(reverse("admin:wallets_operatorwallet_change", args=[operator.pk]))
    assert new_secret not in page.content.decode()


@pytest.mark.django_db
def test_balance_adjustment_page_shows_the_current_balance(client, staff, house):
    _, player = house
    response = client.get(_adjust_url(player))
    assert response.status_code == 200
    assert response.context["current_balance"] == wallet_balance(player=player)
    change_page = client.get(reverse("admin:casino_player_change", args=[player.pk]))
    assert _adjust_url(player).encode() in change_page.content


@pytest.mark.django_db
def test_balance_adjustment_deposit_goes_through_the_ledger_as_staff(client, staff, house):
    _, player = house
    before = wallet_balance(player=player)

    response = _adjust(client, player, amount="25.50", action="deposit", description="Goodwill credit")

    assert response.status_code == 200
    after = wallet_balance(player=player)
    assert after == before + Decimal("25.50")
    entry = LedgerEntry.objects.filter(player=player).order_by("-created_at").first()
    assert (entry.type, entry.amount, entry.actor) == (LedgerType.ADJUSTMENT, Decimal("25.50"), "staff:alice")
    assert entry.description == "Goodwill credit"
    assert any(str(after) in text for text in messages_of(response))


@pytest.mark.django_db
def test_withdrawal_beyond_the_balance_is_refused_and_moves_nothing(client, staff, house):
    _, player = house
    before = wallet_balance(player=player)
    rows = LedgerEntry.objects.count()

    response = _adjust(client, player, amount="1000.00", action="withdraw")

    assert response.status_code == 200
    assert "Insufficient balance" in response.context["form"].non_field_errors()
    assert wallet_balance(player=player) == before
    assert LedgerEntry.objects.count() == rows


@pytest.mark.django_db
def test_resubmitting_the_same_adjustment_form_moves_money_once(client, staff, house):
    _, player = house
    before = wallet_balance(player=player)
    submission = str(uuid.uuid4())

    _adjust(client, player, amount="5.00", submission_id=submission)
    replay = _adjust(client, player, amount="5.00", submission_id=submission)

    assert wallet_balance(player=player) == before + Decimal("5.00")
    assert any("already applied" in text for text in messages_of(replay))


@pytest.mark.django_db
def test_invalid_adjustment_amounts_are_form_errors(client, staff, house):
    _, player = house
    rows = LedgerEntry.objects.count()
    for amount in ("0", "-5", "1.234", "abc"):
        response = _adjust(client, player, amount=amount)
        assert response.status_code == 200
        assert response.context["form"].errors.get("amount"), amount
    assert LedgerEntry.objects.count() == rows


@pytest.mark.django_db
def test_s2s_player_adjustment_is_a_form_error_not_a_crash(client, staff):
    operator = operator_create(name="Remote Book", wallet_mode=WalletMode.S2S, wallet_url="http://127.0.0.1:9/wallet").operator
    player = session_open(operator=operator, external_player_id="remote-1").player

    response = _adjust(client, player, amount="5.00")

    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert not LedgerEntry.objects.filter(player=player).exists()


@pytest.mark.django_db
def test_ledger_admin_is_strictly_read_only(client, staff, house):
    entry = LedgerEntry.objects.first()
    model_admin = admin.site._registry[LedgerEntry]
    request = RequestFactory().get("/admin/")
    request.user = staff
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, entry)
    assert not model_admin.has_delete_permission(request, entry)

    delete = client.post(reverse("admin:wallets_ledgerentry_delete", args=[entry.pk]), {"post": "yes"})
    change = client.post(reverse("admin:wallets_ledgerentry_change", args=[entry.pk]), {"amount": "1000000", "description": "edited"})
    bulk = client.post(
        reverse("admin:wallets_ledgerentry_changelist"), {"action": "delete_selected", "_selected_action": [str(entry.pk)], "post": "yes"}
    )

    assert delete.status_code == 403
    assert change.status_code == 403
    assert bulk.status_code in (200, 302)
    stored = LedgerEntry.objects.get(pk=entry.pk)
    assert (stored.amount, stored.description) == (entry.amount, entry.description)


@pytest.mark.django_db
def test_reference_price_admin_sets_both_outcomes_through_the_service(client, staff):
    response = client.post(
        reverse("admin:casino_referenceprice_add"),
        {"market_id": "0xnewmarket", "title": "New market", "category": "Politics", "outcome": "no", "mid_price": "30"},
        follow=True,
    )
    assert response.status_code == 200
    prices = dict(ReferencePrice.objects.filter(market_id="0xnewmarket").values_list("outcome", "mid_price"))
    assert prices == {"yes": Decimal("70"), "no": Decimal("30")}
    assert Market.objects.get(pk="0xnewmarket").title == "New market"

    yes = ReferencePrice.objects.get(market_id="0xnewmarket", outcome="yes")
    client.post(reverse("admin:casino_referenceprice_change", args=[yes.pk]), {"mid_price": "55.5"}, follow=True)
    prices = dict(ReferencePrice.objects.filter(market_id="0xnewmarket").values_list("outcome", "mid_price"))
    assert prices == {"yes": Decimal("55.5"), "no": Decimal("44.5")}


@pytest.mark.django_db
def test_reference_price_out_of_range_is_a_form_error(client, staff):
    response = client.post(reverse("admin:casino_referenceprice_add"), {"market_id": "0xm", "outcome": "yes", "mid_price": "100"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors.get("mid_price")
    assert not ReferencePrice.objects.exists()


@pytest.mark.django_db
def test_market_status_and_outcome_cannot_be_changed_from_the_admin(client, staff, house):
    url = reverse("admin:casino_market_change", args=[MARKET_ID])
    form = {
        "title": "Renamed",
        "category": "Weather",
        "liquidity": "",
        "custom_spread": "3",
        "status": "resolved",
        "outcome": "yes",
        "risk_limit-TOTAL_FORMS": "1",
        "risk_limit-INITIAL_FORMS": "0",
        "risk_limit-MIN_NUM_FORMS": "0",
        "risk_limit-MAX_NUM_FORMS": "1",
        "risk_limit-0-market": MARKET_ID,
        "risk_limit-0-exposure_cap": "1234.00",
    }
    response = client.post(url, form)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    market = Market.objects.get(pk=MARKET_ID)
    assert (market.title, market.custom_spread, market.status, market.outcome) == ("Renamed", Decimal("3"), "open", None)
    assert market.risk_limit.exposure_cap == Decimal("1234.00")


@pytest.mark.django_db
def test_settings_singletons_cannot_be_added_twice_or_deleted(client, staff):
    client.get(reverse("admin:casino_casinosettings_changelist"))
    assert CasinoSettings.objects.count() == 1
    assert client.get(reverse("admin:casino_casinosettings_add")).status_code == 403
    assert client.post(reverse("admin:casino_casinosettings_delete", args=[1]), {"post": "yes"}).status_code == 403
    client.get(reverse("admin:risk_risksettings_changelist"))
    assert client.get(reverse("admin:risk_risksettings_add")).status_code == 403


@pytest.mark.django_db
def test_players_cannot_be_deleted(client, staff, house):
    _, player = house
    response = client.post(reverse("admin:casino_player_delete", args=[player.pk]), {"post": "yes"})
    assert response.status_code == 403
