# recordproblem_identifier without last_seen_at: an identifier has a handful of
# problems, sorted in no time, and the run-end UPDATE of every still-failing
# problem's last_seen_at has one index fewer to rewrite. PostgreSQL's prefix
# index (recordproblem_identifier_pattern, 0005) follows.

from django.db import migrations, models

PATTERN_WITHOUT = ("CREATE INDEX IF NOT EXISTS recordproblem_identifier_pattern "
                   "ON runs_recordproblem (identifier varchar_pattern_ops)")
PATTERN_WITH = ("CREATE INDEX IF NOT EXISTS recordproblem_identifier_pattern "
                "ON runs_recordproblem (identifier varchar_pattern_ops, last_seen_at DESC)")
DROP_PATTERN = "DROP INDEX IF EXISTS recordproblem_identifier_pattern"


def pattern_without_last_seen(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_PATTERN)
        schema_editor.execute(PATTERN_WITHOUT)


def pattern_with_last_seen(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_PATTERN)
        schema_editor.execute(PATTERN_WITH)


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0009_schedule_funcs_in_runs_tasks'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='recordproblem',
            name='recordproblem_identifier',
        ),
        migrations.AddIndex(
            model_name='recordproblem',
            index=models.Index(fields=['identifier'], name='recordproblem_identifier'),
        ),
        migrations.RunPython(pattern_without_last_seen, pattern_with_last_seen),
    ]
