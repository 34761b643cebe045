# The partial index of S2S sales in flight, widened to the buys: a reversal counts what every trade in
# flight holds on the market's book (settlement/services/reversal.py).

import django.db.models.fields.json
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("wallets", "0011_ledger_house_moves_recent"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="walletoperation", name="wallet_op_sale_in_flight"),
        migrations.AddIndex(
            model_name="walletoperation",
            index=models.Index(
                django.db.models.fields.json.KeyTextTransform("market_id", "payload"),
                condition=models.Q(("settled_locally", False), ("type__in", ["trade_debit", "trade_credit"])),
                name="wallet_op_trade_in_flight",
            ),
        ),
    ]
