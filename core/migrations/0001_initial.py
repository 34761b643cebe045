# The idempotency table moves from casino to the kernel without touching the database:
# casino's migration 0001 created it, this one takes it into core's state, and casino's
# 0004 drops it from casino's state.
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [("casino", "0003_house_refuse")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="IdempotencyRecord",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("scope", models.CharField(help_text="caller + endpoint", max_length=200)),
                        ("key", models.CharField(max_length=255)),
                        ("request_hash", models.CharField(max_length=64)),
                        ("status_code", models.PositiveSmallIntegerField()),
                        ("response_body", models.TextField(help_text="The JSON body exactly as first sent.")),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                    ],
                    options={
                        "db_table": "casino_idempotency",
                        "constraints": [models.UniqueConstraint(fields=("scope", "key"), name="idempotency_unique")],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
