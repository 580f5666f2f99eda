# The receipt's caller and settlement are looked up by the indexes `receipt_caller` and `receipt_settlement`,
# whose first columns they are: their own single-column indexes only cost every metered call two more index
# entries. Only the indexes are dropped: Django's AlterField would drop and add again the foreign keys too, which
# checks every receipt while writes wait.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('models_market', '0005_federated_contributors'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='receipt',
                    name='caller',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='model_receipts', to=settings.AUTH_USER_MODEL),
                ),
                migrations.AlterField(
                    model_name='receipt',
                    name='settlement',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='receipts', to='models_market.settlement'),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "models_market_receipt_caller_id_105c5b08"',
                    'CREATE INDEX "models_market_receipt_caller_id_105c5b08" ON "models_market_receipt" ("caller_id")',
                ),
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "models_market_receipt_settlement_id_861ff6fc"',
                    'CREATE INDEX "models_market_receipt_settlement_id_861ff6fc" ON "models_market_receipt" ("settlement_id")',
                ),
            ],
        ),
    ]
