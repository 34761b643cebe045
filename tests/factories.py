"""factory-boy factories, one per model the tests build directly."""

import uuid
from decimal import Decimal

import factory
from django.utils import timezone

from casino.models import Market, Operator, Player, ReferencePrice
from casino.services.credentials import token_hash
from wallets.models import PlayerWallet


class OperatorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Operator

    name = factory.Sequence(lambda n: f"operator-{n}")
    api_key_hash = factory.LazyFunction(lambda: token_hash(str(uuid.uuid4())))
    api_key_prefix = "op_test"
    wallet_mode = "internal"
    currency = "USD"


class PlayerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Player

    operator = factory.SubFactory(OperatorFactory)
    external_id = factory.Sequence(lambda n: f"player-{n}")


class PlayerWalletFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PlayerWallet

    player = factory.SubFactory(PlayerFactory)
    balance = Decimal("0")


class MarketFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Market

    id = factory.Sequence(lambda n: f"0x{n:064x}")
    title = factory.Sequence(lambda n: f"Market {n}")
    category = "crypto"


class ReferencePriceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReferencePrice

    market = factory.SubFactory(MarketFactory)
    outcome = "yes"
    mid_price = Decimal("62")
    updated_at = factory.LazyFunction(timezone.now)
