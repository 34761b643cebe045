# The idempotency table now belongs to the kernel (core 0001); the database is unchanged.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("casino", "0003_house_refuse"), ("core", "0001_initial")]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="IdempotencyRecord")], database_operations=[]),
    ]
