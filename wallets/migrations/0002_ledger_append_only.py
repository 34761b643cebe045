"""The ledger is append-only: PostgreSQL refuses UPDATE and DELETE of its rows."""
from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the wallet ledger is append-only (% refused)', TG_OP USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON s2s_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
"""
BACKWARD = """
DROP TRIGGER IF EXISTS ledger_append_only ON s2s_transactions;
DROP FUNCTION IF EXISTS ledger_refuse_change();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("wallets", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
