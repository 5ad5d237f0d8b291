from django.db import migrations

# PostgreSQL only: under a non-C collation a plain btree index cannot serve
# `identifier LIKE 'ABC%'` (the error explorer's and the admin's prefix
# search). varchar_pattern_ops can. SQLite's prefix search is a range on the
# ordinary runerror_identifier_created index (see runs.selectors).
CREATE = (
    "CREATE INDEX IF NOT EXISTS runerror_identifier_pattern "
    "ON runs_runerror (identifier varchar_pattern_ops, created_at DESC)"
)
DROP = "DROP INDEX IF EXISTS runerror_identifier_pattern"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("runs", "0003_runerror_pipeline")]

    operations = [migrations.RunPython(create, drop)]
