"""The rollup's triggers (reports/rollup.py) and a backfill from the rows already there."""

from django.db import migrations

from reports.rollup import rollup_rebuild, triggers_install, triggers_remove


def forward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor not in ("postgresql", "sqlite"):
        return
    with connection.cursor() as cursor:
        rollup_rebuild(cursor, connection.vendor)
    triggers_install(schema_editor)


def backward(apps, schema_editor):
    triggers_remove(schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("reports", "0001_initial"),
        ("casino", "0009_position_indexes_for_settlement"),
        ("wallets", "0007_ledger_trade_partial"),
    ]
    operations = [migrations.RunPython(forward, backward)]
