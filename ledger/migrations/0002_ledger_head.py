from django.db import migrations


def create_head(apps, schema_editor):
    # The one row every append locks; created here so that no two first appends race to create it.
    apps.get_model("ledger", "LedgerHead").objects.get_or_create(pk=1, defaults={"head_hash": bytes(32)})


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]
    operations = [migrations.RunPython(create_head, migrations.RunPython.noop)]
