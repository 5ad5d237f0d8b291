"""Upgrading to corrections (migrations 0003/0004) on a registry that already holds members."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import F

from pipelines.models import Correction, Member, Parent
from runs.runner import run_pipeline

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("pipelines", "0002_member_freescout_hash")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def test_existing_members_become_no_corrections_and_are_rewritten_once(export_dir):
    run_pipeline("people")
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("pipelines")
    try:
        migrate(BEFORE)
        with connection.cursor() as cursor:  # as the old import stored them: "12 A" in one field
            cursor.execute("UPDATE pipelines_member SET house_number = house_number || ' A' WHERE house_number <> ''")
    finally:
        migrate(latest)
    current = Member.objects.filter(is_former=False)
    assert set(current.values_list("source_hash", flat=True)) == {"reimport"}
    assert not current.exclude(email__exact=F("sportlink_email")).exists()

    run = run_pipeline("people")
    assert not Correction.objects.exists()
    assert run.steps.get(name="reverse-sync").created == 0
    assert run.steps.get(name="rondo-club-sync").updated == current.count()
    assert not Member.objects.filter(house_number__endswith=" A").exists()
    assert "reimport" not in set(Member.objects.values_list("source_hash", flat=True))


def test_existing_parents_keep_their_rows_and_become_no_corrections(export_dir):
    """Migrations 0005-0007: every parent's email becomes its Sportlink key, and its phone Sportlink's copy."""
    run_pipeline("people")
    before = dict(Parent.objects.values_list("email", "pk"))
    assert before
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("pipelines")
    try:
        migrate([("pipelines", "0004_fill_sportlink_snapshot")])
    finally:
        migrate(latest)
    assert not Parent.objects.exclude(sportlink_email=F("email")).exists()
    assert not Parent.objects.exclude(sportlink_phone=F("phone")).exists()
    run = run_pipeline("people")
    assert not Correction.objects.exists()
    assert dict(Parent.objects.values_list("email", "pk")) == before
    assert run.steps.get(name="reverse-sync").created == 0
