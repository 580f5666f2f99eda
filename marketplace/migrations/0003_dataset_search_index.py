"""A GIN index over the listings' full-text search vector, on PostgreSQL only (SQLite searches by word matching).

The expression is frozen here as it stood when indexed; it must stay the one `selectors.dataset_search_vector`
builds, or searches stop using the index (tests/marketplace/test_search.py checks they do).
"""

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.db import migrations
from django.db.models import TextField
from django.db.models.functions import Cast


def _index() -> GinIndex:
    vector = (
        SearchVector("title", weight="A", config="english")
        + SearchVector(Cast("tags", TextField()), weight="A", config="english")
        + SearchVector("description", weight="B", config="english")
    )
    return GinIndex(vector, name="dataset_search")


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.add_index(apps.get_model("marketplace", "Dataset"), _index())


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.remove_index(apps.get_model("marketplace", "Dataset"), _index())


class Migration(migrations.Migration):
    dependencies = [("marketplace", "0002_version_preview_columns")]

    operations = [migrations.RunPython(create, drop)]
