"""The `people` pipeline on demo exports: counts, hashes, former members, dry run, photos, bad input."""

import io
import zipfile

import pytest

from pipelines.models import Member, Parent
from runs.models import RunError, RunStatus, StepStatus
from runs.runner import run_pipeline
from tests.pipelines.conftest import export_file, rewrite

pytestmark = pytest.mark.django_db(transaction=True)


def steps(run):
    return {s.name: s for s in run.steps.all()}


def test_the_demo_run_ends_partial_with_errors_pointing_at_the_bad_rows(export_dir):
    run = run_pipeline("people")
    assert run.status == RunStatus.PARTIAL
    by_name = steps(run)
    assert [s.name for s in run.steps.order_by("position")] == [
        "sportlink-download", "laposta-prepare", "laposta-submit", "rondo-club-sync", "reverse-sync",
        "photo-download", "photo-sync"]
    assert by_name["sportlink-download"].read == 64 and by_name["sportlink-download"].failed == 4
    assert by_name["laposta-submit"].status == StepStatus.SKIPPED
    assert by_name["laposta-submit"].reason == "LAPOSTA_API_KEY is not set"
    sync = by_name["rondo-club-sync"]
    assert sync.status == StepStatus.SUCCESS
    assert sync.created == Member.objects.count() + Parent.objects.count()
    assert Member.objects.count() == 60
    errors = {e.identifier: e.message for e in RunError.objects.filter(run=run)}
    assert "ZZB01X1" in errors and "not a valid email" in errors["ZZB01X1"]
    assert "ZZB02X2" in errors and "'2012-02-30' is not a date" in errors["ZZB02X2"]
    assert "the relatiecode (Rel. code) is missing" in errors["zonder.relatiecode@example.org"]
    duplicate = next(m for m in errors.values() if "duplicate relatiecode" in m)
    assert duplicate.startswith("Leden 64 personen gevonden.csv row ")
    assert all(" row " in message for message in errors.values())


def test_a_second_run_reports_the_unchanged_records_as_skipped(export_dir):
    first = run_pipeline("people")
    second = run_pipeline("people")
    sync = steps(second)["rondo-club-sync"]
    assert (sync.created, sync.updated, sync.skipped) == (0, 0, steps(first)["rondo-club-sync"].created)
    assert second.created == 0 and second.updated == 0
    assert steps(second)["photo-sync"].skipped == 3
    assert second.error_count == 4  # the bad rows are still bad


def test_a_changed_member_is_updated_and_a_new_one_created(export_dir):
    run_pipeline("people")
    member = Member.objects.exclude(email="").order_by("knvb_id").first()
    path = export_file(export_dir, "Leden")
    rewrite(path, member.email, "nieuw.adres@example.org")
    run = run_pipeline("people")
    sync = steps(run)["rondo-club-sync"]
    assert (sync.created, sync.updated) == (0, 1)
    member.refresh_from_db()
    assert member.email == "nieuw.adres@example.org"
    # The update stored the new row's hash: the next run skips the member again.
    again = steps(run_pipeline("people"))["rondo-club-sync"]
    assert (again.created, again.updated, again.skipped) == (0, 0, sync.skipped + 1)


def test_a_member_who_leaves_is_marked_former_and_one_who_returns_is_updated(export_dir):
    run_pipeline("people")
    path = export_file(export_dir, "Leden")
    original = path.read_bytes()
    lines = original.decode("utf-8-sig").split("\r\n")
    leaving = Member.objects.filter(parents__isnull=True).order_by("knvb_id").first()
    path.write_bytes("\r\n".join(line for line in lines if f'"{leaving.knvb_id}"' not in line)
                     .encode("utf-8-sig"))

    run = run_pipeline("people")
    sync = steps(run)["rondo-club-sync"]
    assert sync.updated == 1 and sync.detail["former"] == 1
    leaving.refresh_from_db()
    assert leaving.is_former  # never deleted
    # Members on bad rows are still in the export: not former.
    assert not Member.objects.filter(is_former=True).exclude(pk=leaving.pk).exists()

    run = run_pipeline("people")
    assert steps(run)["rondo-club-sync"].updated == 0  # already former: nothing to do

    path.write_bytes(original)
    run = run_pipeline("people")
    assert steps(run)["rondo-club-sync"].updated == 1
    leaving.refresh_from_db()
    assert not leaving.is_former


def test_dry_run_counts_and_writes_nothing(export_dir):
    run = run_pipeline("people", dry_run=True)
    sync = steps(run)["rondo-club-sync"]
    assert sync.created > 60
    assert steps(run)["photo-sync"].created + steps(run)["photo-sync"].updated == 3
    assert not Member.objects.exists() and not Parent.objects.exists()

    run_pipeline("people")
    rewrite(export_file(export_dir, "Leden"), "@example", "@voorbeeld.example")
    before = list(Member.objects.order_by("pk").values_list("email", "source_hash"))
    run = run_pipeline("people", dry_run=True)
    assert steps(run)["rondo-club-sync"].updated > 0
    assert list(Member.objects.order_by("pk").values_list("email", "source_hash")) == before


def test_a_dry_run_counts_a_member_who_left_but_does_not_mark_them_former(export_dir):
    run_pipeline("people")
    leaving = Member.objects.filter(parents__isnull=True).order_by("knvb_id").first()
    path = export_file(export_dir, "Leden")
    lines = path.read_bytes().decode("utf-8-sig").split("\r\n")
    path.write_bytes("\r\n".join(line for line in lines if f'"{leaving.knvb_id}"' not in line).encode("utf-8-sig"))
    before = list(Member.objects.order_by("pk").values_list("knvb_id", "is_former", "source_hash"))

    run = run_pipeline("people", dry_run=True)
    sync = steps(run)["rondo-club-sync"]
    assert (sync.created, sync.updated) == (0, 1) and sync.detail["former"] == 1
    assert list(Member.objects.order_by("pk").values_list("knvb_id", "is_former", "source_hash")) == before

    run = run_pipeline("people")  # the real run marks them, as the dry run said
    assert steps(run)["rondo-club-sync"].updated == 1
    assert list(Member.objects.filter(is_former=True).values_list("knvb_id", "source_hash")) == [
        (leaving.knvb_id, "")]


def test_parents_are_linked_to_their_children(export_dir):
    run_pipeline("people")
    parent = Parent.objects.order_by("email").first()
    assert parent.children.exists()
    child = parent.children.first()
    assert parent in child.parents.all()
    # Siblings share a parent row (keyed by email).
    assert Parent.objects.values("email").distinct().count() == Parent.objects.count()


def test_a_photo_is_stored_once_and_replaced_only_when_its_bytes_change(export_dir):
    run_pipeline("people")
    photo = next((export_dir / "photos").iterdir())
    member = Member.objects.get(knvb_id=photo.stem)
    first_name = member.photo.name
    assert member.photo.read() == photo.read_bytes()

    run = run_pipeline("people")
    member.refresh_from_db()
    assert member.photo.name == first_name and steps(run)["photo-sync"].updated == 0

    photo.write_bytes(photo.read_bytes() + b"changed")
    run = run_pipeline("people")
    member.refresh_from_db()
    assert steps(run)["photo-sync"].updated == 1
    assert member.photo.name != first_name and member.photo.read().endswith(b"changed")


def test_a_photo_of_an_unknown_member_is_an_error_for_that_photo(export_dir):
    (export_dir / "photos" / "QQQ00Q0.png").write_bytes(b"\x89PNG fake")
    run = run_pipeline("people")
    error = RunError.objects.get(run=run, step_name="photo-sync")
    assert error.identifier == "QQQ00Q0" and "no member with relatiecode QQQ00Q0" in error.message


def test_a_missing_export_fails_the_download_step_naming_what_was_expected(tmp_path, settings):
    settings.SPORTLINK_EXPORT_DIR = str(tmp_path)
    (tmp_path / "Teams 1 personen gevonden.csv").write_text("Team;Teamrol;Rel. code\nJO11-1;Teamspeler;ABC12D3\n")
    run = run_pipeline("people")
    assert run.status == RunStatus.FAILED
    step = steps(run)["sportlink-download"]
    assert step.status == StepStatus.FAILED
    assert "No members export found" in step.reason and "'Rel. code'" in step.reason
    assert "Teams 1 personen gevonden.csv (teams export)" in step.reason
    assert not Member.objects.exists()


def test_a_missing_directory_fails_the_download_step(tmp_path, settings):
    settings.SPORTLINK_EXPORT_DIR = str(tmp_path / "nope")
    run = run_pipeline("people")
    assert run.status == RunStatus.FAILED
    assert "does not exist" in steps(run)["sportlink-download"].reason


def test_missing_required_columns_fail_the_download_step_naming_file_and_columns(tmp_path, settings):
    settings.SPORTLINK_EXPORT_DIR = str(tmp_path)
    (tmp_path / "Leden 2 personen gevonden.csv").write_text("Rel. code;Lidsoort\nABC12D3;Bondslid\n")
    run = run_pipeline("people")
    reason = steps(run)["sportlink-download"].reason
    assert run.status == RunStatus.FAILED
    assert "Leden 2 personen gevonden.csv" in reason and "Achternaam or Naam" in reason


def test_the_export_can_come_from_an_https_url_as_a_zip(export_dir, settings, httpserver):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in export_dir.rglob("*"):
            if path.is_file():
                archive.write(path, path.relative_to(export_dir).as_posix())
    httpserver.expect_request("/exports/sportlink.zip").respond_with_data(buffer.getvalue())
    settings.SPORTLINK_EXPORT_DIR = httpserver.url_for("/exports/sportlink.zip")
    run = run_pipeline("people")
    assert run.status == RunStatus.PARTIAL
    assert Member.objects.count() == 60
    assert Member.objects.exclude(photo="").count() == 3


def test_a_url_that_fails_fails_the_download_step_without_leaking_the_query(settings, httpserver):
    httpserver.expect_request("/leden.csv").respond_with_data("nope", status=503)
    settings.SPORTLINK_EXPORT_DIR = httpserver.url_for("/leden.csv") + "?token=geheim"
    run = run_pipeline("people")
    reason = steps(run)["sportlink-download"].reason
    assert run.status == RunStatus.FAILED and "HTTP 503" in reason and "geheim" not in reason


def test_a_plain_http_url_is_refused_unless_loopback(settings):
    settings.SPORTLINK_EXPORT_DIR = "http://exports.example.org/leden.csv"
    run = run_pipeline("people")
    assert "must use https" in steps(run)["sportlink-download"].reason
