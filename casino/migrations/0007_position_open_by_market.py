# Settlement workers claim a market's open positions a chunk at a time, in id order, with SKIP LOCKED
# (settlement.services.snapshot.positions_claim): a partial index on the open ones hands them over.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('casino', '0006_market_feed'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='position',
            index=models.Index(condition=models.Q(('status', 'open')), fields=['market', 'id'], name='position_open_by_market'),
        ),
    ]
