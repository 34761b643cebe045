"""house_refuse(code): raise from inside a SQL statement, so that a multi-statement round trip
stops before its COMMIT (used by the compact trade path: casino/services/trade_executor.py)."""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION house_refuse(code text) RETURNS integer AS $$
BEGIN
    RAISE EXCEPTION USING MESSAGE = code, ERRCODE = 'raise_exception';
END;
$$ LANGUAGE plpgsql VOLATILE;
"""
BACKWARD = "DROP FUNCTION IF EXISTS house_refuse(text);"


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("casino", "0002_globalexposure_referencepricetick")]
    operations = [migrations.RunPython(forward, backward)]
