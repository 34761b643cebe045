"""The S2S wallet signing secret sealed at rest (SPEC §15): each plain secret is sealed under the
current key (core.crypto, HOUSE_SECRETS_KEY) into ``secret_sealed``, and the plain column dropped."""

from django.db import migrations, models

from core.crypto import secret_open, secret_seal


def seal(apps, schema_editor):
    OperatorWallet = apps.get_model("wallets", "OperatorWallet")
    for config in OperatorWallet.objects.only("pk", "secret").iterator():
        OperatorWallet.objects.filter(pk=config.pk).update(secret_sealed=secret_seal(config.secret))


def unseal(apps, schema_editor):
    OperatorWallet = apps.get_model("wallets", "OperatorWallet")
    for config in OperatorWallet.objects.only("pk", "secret_sealed").iterator():
        OperatorWallet.objects.filter(pk=config.pk).update(secret=secret_open(config.secret_sealed))


class Migration(migrations.Migration):
    dependencies = [
        ("wallets", "0008_operator_list_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="operatorwallet",
            name="secret_sealed",
            field=models.TextField(default="", editable=False),
            preserve_default=False,
        ),
        migrations.RunPython(seal, unseal),
        # A default only so that going back can add the plain column to existing rows before unsealing into it.
        migrations.AlterField(
            model_name="operatorwallet", name="secret", field=models.CharField(default="", editable=False, max_length=128)
        ),
        migrations.RemoveField(model_name="operatorwallet", name="secret"),
    ]
