"""The registry sync helpers (pipelines.sync): hash skip, upsert, duplicate keys, removals, dry run."""

import logging

import pytest

from pipelines.models import Team
from pipelines.sync import Upserter, existing_hashes, source_hash, update_in_batches
from runs.models import RunError, RunStatus
from runs.pipeline import register, unregister
from runs.runner import run_pipeline
from tests.pipelines.conftest import export_file

pytestmark = pytest.mark.django_db(transaction=True)

NAME = "test-upsert-teams"


@pytest.fixture
def teams_pipeline():
    """A pipeline that upserts Team rows from `plan["rows"]` (sportlink id, name) and
    marks the teams missing from them as "gone" (kind = "gone") like `people` marks
    former members. Returns the plan; each run also stores what unseen() returned."""
    plan = {"rows": [], "batch_size": 500, "unseen": None, "outcomes": [], "digest": True}

    @register(NAME)
    def upsert_teams(run):
        with run.step("team-sync", total=len(plan["rows"])) as step:
            existing = existing_hashes(Team.objects.all(), "sportlink_id")
            with Upserter(step, Team, existing=existing, fields=("name",), dry_run=run.dry_run,
                          batch_size=plan["batch_size"]) as upserter:
                plan["outcomes"] = []
                for team_id, name in plan["rows"]:
                    item = {"team_name": team_id}
                    with step.item(item):
                        # Values as a callable (called only when the row is written), like `people`.
                        digest = {"digest": source_hash(name)} if plan["digest"] else {}
                        plan["outcomes"].append(upserter.add(
                            item, key=team_id, values=lambda t=team_id, n=name: {"sportlink_id": t, "name": n},
                            **digest))
            plan["unseen"] = upserter.unseen()
            gone = [pk for pk, _digest in plan["unseen"].values()]
            update_in_batches(step, Team, gone, dry_run=run.dry_run, batch_size=2, kind="gone", source_hash="")

    yield plan
    unregister(NAME)


def counts(run):
    step = run.steps.get(name="team-sync")
    return step.created, step.updated, step.skipped, step.failed


def stored():
    return {t.sportlink_id: (t.name, t.kind, t.source_hash) for t in Team.objects.all()}


def test_rows_are_created_then_skipped_by_hash_and_an_update_stores_the_new_hash(teams_pipeline, caplog):
    caplog.set_level(logging.INFO, logger="pipelines.sync")
    teams_pipeline["rows"] = [("T1", "JO11-1"), ("T2", "JO11-2"), ("T3", "MO13-1")]
    run = run_pipeline(NAME)
    assert run.status == RunStatus.SUCCESS
    assert counts(run) == (3, 0, 0, 0)
    assert stored() == {"T1": ("JO11-1", "", source_hash("JO11-1")), "T2": ("JO11-2", "", source_hash("JO11-2")),
                        "T3": ("MO13-1", "", source_hash("MO13-1"))}
    assert Team.objects.filter(last_synced_at__isnull=True).count() == 0

    assert teams_pipeline["outcomes"] == ["created", "created", "created"]
    assert counts(run_pipeline(NAME)) == (0, 0, 3, 0)
    assert teams_pipeline["outcomes"] == ["skipped", "skipped", "skipped"]

    teams_pipeline["rows"][1] = ("T2", "JO11-2 (zaterdag)")
    run = run_pipeline(NAME)
    assert counts(run) == (0, 1, 2, 0)
    assert teams_pipeline["outcomes"] == ["skipped", "updated", "skipped"]
    assert (run.created, run.updated, run.skipped) == (0, 1, 2)
    # The updated row carries the hash of its new values, so the next run skips it.
    assert stored()["T2"] == ("JO11-2 (zaterdag)", "", source_hash("JO11-2 (zaterdag)"))
    assert counts(run_pipeline(NAME)) == (0, 0, 3, 0)
    # Every batch was written in one go: nothing fell back to row by row.
    assert not [r for r in caplog.records if "row by row" in r.getMessage()]


def test_a_row_without_a_digest_stores_an_empty_hash(teams_pipeline):
    teams_pipeline["digest"] = False
    teams_pipeline["rows"] = [("T1", "A")]
    run_pipeline(NAME)
    assert stored() == {"T1": ("A", "", "")}
    assert teams_pipeline["outcomes"] == ["created"]
    run_pipeline(NAME)
    assert teams_pipeline["outcomes"] == ["skipped"]  # "" matches the stored ""


def test_a_key_twice_in_one_export_is_written_once_and_counted_skipped(teams_pipeline):
    teams_pipeline["rows"] = [("T1", "JO11-1"), ("T1", "JO11-1"), ("T2", "JO11-2")]
    run = run_pipeline(NAME)
    assert counts(run) == (2, 0, 1, 0)
    assert teams_pipeline["outcomes"] == ["created", "skipped", "created"]
    assert run.status == RunStatus.SUCCESS and not RunError.objects.filter(run=run).exists()
    assert sorted(stored()) == ["T1", "T2"]


def test_rows_missing_from_the_export_are_unseen_and_marked_in_batches(teams_pipeline):
    teams_pipeline["rows"] = [("T1", "A"), ("T2", "B"), ("T3", "C"), ("T4", "D"), ("T5", "E")]
    run_pipeline(NAME)
    pks = dict(Team.objects.values_list("sportlink_id", "pk"))
    teams_pipeline["rows"] = [("T2", "B")]
    run = run_pipeline(NAME)
    assert set(teams_pipeline["unseen"]) == {"T1", "T3", "T4", "T5"}
    assert teams_pipeline["unseen"]["T1"] == (pks["T1"], source_hash("A"))
    # Four marked in batches of two: all counted as updated, the present one skipped.
    assert counts(run) == (0, 4, 1, 0)
    assert {k: v[1] for k, v in stored().items()} == {"T1": "gone", "T2": "", "T3": "gone", "T4": "gone",
                                                      "T5": "gone"}


def test_a_dry_run_counts_creates_updates_and_removals_but_writes_nothing(teams_pipeline):
    teams_pipeline["rows"] = [("T1", "A"), ("T2", "B"), ("T3", "C")]
    run_pipeline(NAME)
    before = stored()
    teams_pipeline["rows"] = [("T1", "A"), ("T2", "B2"), ("T4", "D")]
    run = run_pipeline(NAME, dry_run=True)
    # T4 new, T2 changed, T3 gone (an update), T1 unchanged.
    assert counts(run) == (1, 2, 1, 0)
    assert run.dry_run and stored() == before


def test_small_batches_write_every_row_and_count_each_once(teams_pipeline):
    teams_pipeline["batch_size"] = 2
    teams_pipeline["rows"] = [(f"T{i}", f"Team {i}") for i in range(5)]
    run = run_pipeline(NAME)
    assert counts(run) == (5, 0, 0, 0)
    assert sorted(stored()) == [f"T{i}" for i in range(5)]


def test_a_row_the_database_refuses_fails_alone_and_the_batch_goes_on(teams_pipeline, caplog):
    caplog.set_level(logging.INFO, logger="pipelines.sync")
    teams_pipeline["rows"] = [("T1", "A"), ("T2", None), ("T3", "C")]  # name is NOT NULL
    run = run_pipeline(NAME)
    (retry,) = [r.getMessage() for r in caplog.records if "row by row" in r.getMessage()]
    assert retry.startswith("batch write of Team failed (") and "name" in retry
    assert counts(run) == (2, 0, 0, 1)
    assert run.status == RunStatus.PARTIAL
    error = RunError.objects.get(run=run)
    assert (error.identifier, error.identifier_kind, error.step_name) == ("T2", "team", "team-sync")
    assert sorted(stored()) == ["T1", "T3"]


def test_existing_hashes_keys_by_one_field_or_a_tuple_of_fields(teams_pipeline):
    a = Team.objects.create(sportlink_id="T1", name="A", source_hash="h1")
    b = Team.objects.create(sportlink_id="T2", name="B", source_hash="h2")
    assert existing_hashes(Team.objects.all(), "sportlink_id") == {"T1": (a.pk, "h1"), "T2": (b.pk, "h2")}
    assert existing_hashes(Team.objects.filter(pk=b.pk), "sportlink_id", "name") == {("T2", "B"): (b.pk, "h2")}
    assert existing_hashes(Team.objects.all(), "name", hash_field="sportlink_id") == {"A": (a.pk, "T1"),
                                                                                       "B": (b.pk, "T2")}


def test_source_hash_depends_on_every_value_and_its_order():
    assert source_hash("a", "b") == source_hash("a", "b")
    assert len({source_hash("a", "b"), source_hash("b", "a"), source_hash("a", "b", None), source_hash("ab")}) == 4
    assert len(source_hash("a")) == 32


def test_upserter_refuses_after_write_without_a_key_field():
    with pytest.raises(ValueError, match="key_field"):
        Upserter(None, Team, existing={}, fields=(), dry_run=True, after_write=lambda rows: None)


def test_a_failing_batch_is_retried_row_by_row_and_counts_updates_as_updates(teams_pipeline):
    teams_pipeline["rows"] = [("T1", "A"), ("T2", "B")]
    run_pipeline(NAME)
    teams_pipeline["rows"] = [("T1", "A2"), ("T2", None), ("T3", "C")]  # T2's update breaks the batch
    run = run_pipeline(NAME)
    assert counts(run) == (1, 1, 0, 1)
    assert stored()["T1"][0] == "A2" and stored()["T2"][0] == "B" and "T3" in stored()
    error = RunError.objects.get(run=run)  # the failing update, named, with the database's reason
    assert (error.identifier, error.identifier_kind) == ("T2", "team")
    assert "null" in error.message.lower() and "name" in error.message


@pytest.fixture
def rows_pipeline():
    """A pipeline whose download step reports the row errors of a ReadResult."""
    from pipelines.readers import ReadResult, RowError
    from pipelines.sync import report_row_errors

    result = ReadResult(errors=[
        RowError(4, "not a valid email", "ABC12D3", "knvb_id", "Leden.csv"),
        RowError(7, "the relatiecode (Rel. code) is missing"),
    ])

    @register("test-row-errors")
    def row_errors(run):
        with run.step("download") as step:
            report_row_errors(step, result)

    yield
    unregister("test-row-errors")


def test_unreadable_rows_become_errors_with_the_best_identifier_or_the_row(rows_pipeline):
    run = run_pipeline("test-row-errors")
    step = run.steps.get(name="download")
    assert (run.status, step.status, step.failed) == (RunStatus.PARTIAL, "partial", 2)
    got = [(e.identifier, e.identifier_kind, e.message, e.step_name)
           for e in RunError.objects.filter(run=run).order_by("pk")]
    assert got == [
        ("ABC12D3", "knvb_id", "Leden.csv row 4: not a valid email", "download"),
        ("row 7", "row", "row 7: the relatiecode (Rel. code) is missing", "download"),
    ]


def test_knvb_map_leaves_out_former_members_on_request_and_adds_the_export_in_a_dry_run(export_dir):
    from pipelines.models import Member
    from pipelines.sync import knvb_map

    current = Member.objects.create(knvb_id="AAA11A1")
    former = Member.objects.create(knvb_id="BBB22B2", is_former=True)
    assert knvb_map() == {"AAA11A1": current.pk, "BBB22B2": former.pk}
    assert knvb_map(include_former=False) == {"AAA11A1": current.pk}
    would_be = knvb_map(dry_run=True)
    assert would_be["AAA11A1"] == current.pk and would_be["BBB22B2"] == former.pk
    # The members of the current export would exist after `people`: pk 0.
    in_export = {pk for code, pk in would_be.items() if code not in ("AAA11A1", "BBB22B2")}
    assert in_export == {0} and would_be["CNN13C8"] == 0
    assert len(would_be) == 2 + 62  # the demo export's distinct relatiecodes, bad rows included


def upsert_once(rows, *, unchanged=(), **options):
    """One run of an Upserter over Team rows (code, name); returns (run, what unseen() returned)."""
    seen = {}

    @register("test-upsert-once")
    def upsert_once_pipeline(run):
        with run.step("team-sync") as step:
            existing = existing_hashes(Team.objects.all(), "sportlink_id")
            with Upserter(step, Team, existing=existing, fields=("name",), dry_run=run.dry_run, **options) as up:
                up.skip_unchanged(list(unchanged))
                for code, name in rows:
                    up.add(code, key=code, values={"sportlink_id": code, "name": name}, digest=source_hash(name))
            seen["unseen"] = up.unseen()

    try:
        run = run_pipeline("test-upsert-once")
    finally:
        unregister("test-upsert-once")
    return run, seen["unseen"]


def test_after_write_gets_each_written_row_with_its_pk_and_whether_it_was_created():
    Team.objects.create(sportlink_id="T1", name="A", source_hash=source_hash("A"))
    Team.objects.create(sportlink_id="T3", name="C", source_hash=source_hash("C"))
    written = []
    run, _unseen = upsert_once([("T1", "A2"), ("T2", "B"), ("T3", "C")], key_field="sportlink_id",
                               after_write=written.extend)
    pks = dict(Team.objects.values_list("sportlink_id", "pk"))
    # The unchanged T3 is not written, so after_write does not see it.
    assert sorted(written) == [("T1", pks["T1"], False), ("T2", pks["T2"], True)]
    assert counts(run) == (1, 1, 1, 0)


def test_rows_known_unchanged_before_they_were_read_are_skipped_and_not_unseen():
    for code in ("T1", "T2", "T3"):
        Team.objects.create(sportlink_id=code, name=code, source_hash=source_hash(code))
    run, unseen = upsert_once([("T4", "D")], unchanged=["T1", "T2"])
    assert counts(run) == (1, 0, 2, 0)
    assert set(unseen) == {"T3"}
    assert Team.objects.get(sportlink_id="T1").name == "T1"


@pytest.fixture
def downloads(export_dir):
    """A pipeline of two download steps of the demo Nikki export, with and without `describe`.

    Its reader takes a keyword (`unreadable`: one more row it reports as unreadable).
    """
    from pipelines.readers import RowError, read_nikki
    from pipelines.sources import ExportSource
    from pipelines.sync import download

    results = {}

    def reader(table, *, unreadable):
        result = read_nikki(table)
        result.errors.append(RowError(unreadable, "the amount is not a number"))
        return result

    @register("test-download")
    def two_downloads(run):
        source = ExportSource(str(export_dir))
        results["described"] = download(run, "described", source, "nikki", reader, unreadable=5,
                                        describe=lambda result: {"contributions": len(result.records)})
        results["plain"] = download(run, "plain", source, "nikki", reader, unreadable=6)

    yield results
    unregister("test-download")


def test_download_reads_with_the_reader_options_and_records_file_source_and_description(downloads, export_dir):
    run = run_pipeline("test-download")
    described, plain = run.steps.get(name="described"), run.steps.get(name="plain")
    result = downloads["described"]
    name = export_file(export_dir, "Nikki").name
    assert described.detail == {"file": name, "source": str(export_dir), "contributions": len(result.records)}
    assert plain.detail == {"file": name, "source": str(export_dir)}
    assert (described.read, described.failed) == (result.rows, len(result.errors))
    added = RunError.objects.filter(run=run, message__contains="not a number").order_by("pk")
    assert [(e.step_name, e.identifier) for e in added] == [("described", "row 5"), ("plain", "row 6")]
