# A payout's player and operator are copies of its position's (which keeps both foreign keys): their own
# constraints go, whose checks at commit cost one query per payout row (settlement.services.snapshot
# creates them a chunk of positions at a time).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('casino', '0007_position_open_by_market'),
        ('settlement', '0003_payout_claim_order'),
    ]

    operations = [
        migrations.AlterField(
            model_name='payout',
            name='operator',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='payouts', to='casino.operator'),
        ),
        migrations.AlterField(
            model_name='payout',
            name='player',
            field=models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.PROTECT, related_name='payouts', to='casino.player'),
        ),
    ]
