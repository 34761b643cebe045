"""Default tiers: every player starts as 'standard'."""
from decimal import Decimal

from django.db import migrations

TIERS = [
    ("standard", Decimal("1000"), Decimal("5000"), Decimal("2000")),
    ("vip", Decimal("10000"), Decimal("50000"), Decimal("20000")),
    ("restricted", Decimal("100"), Decimal("500"), Decimal("200")),
]


def forward(apps, schema_editor):
    Tier = apps.get_model("risk", "Tier")
    for name, stake, position, loss in TIERS:
        Tier.objects.get_or_create(name=name, defaults={"max_stake": stake, "max_position_per_market": position, "max_daily_loss": loss})


class Migration(migrations.Migration):
    dependencies = [("risk", "0002_operatorrisklimit_playerriskprofile_riskdecision_and_more")]
    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
