"""Record history filled by the club pipelines: changes per record, problems until fixed, --only."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from pipelines.models import CommissieMembership, Contribution, DisciplineCase, Member, Parent, Team, TeamMembership
from runs.models import ChangeAction, RecordChange, RecordProblem, Run
from runs.runner import run_pipeline
from tests.pipelines import laposta_fake as laposta_tests
from tests.pipelines.conftest import export_file, rewrite

pytestmark = pytest.mark.django_db(transaction=True)


def drop_member_line(directory, knvb_id):
    path = export_file(directory, "Leden")
    lines = path.read_bytes().decode("utf-8-sig").split("\r\n")
    path.write_bytes("\r\n".join(line for line in lines if f'"{knvb_id}"' not in line).encode("utf-8-sig"))


def test_a_first_run_files_a_created_change_per_row_and_an_unchanged_run_none(export_dir):
    first = run_pipeline("people")
    created = RecordChange.objects.filter(run=first, action=ChangeAction.CREATED)
    assert created.filter(identifier_kind="knvb_id").count() == Member.objects.count()
    assert created.filter(identifier_kind="email").count() == Parent.objects.count()
    change = created.get(identifier=Member.objects.order_by("knvb_id").first().knvb_id)
    assert (change.pipeline, change.step_name, change.record_type) == ("people", "rondo-club-sync", "member")

    second = run_pipeline("people")
    assert second.skipped > 0
    assert not RecordChange.objects.filter(run=second).exists()


def test_a_field_change_is_recorded_with_its_old_and_new_value(export_dir):
    run_pipeline("people")
    member = Member.objects.exclude(email="").order_by("knvb_id").first()
    old_email = member.email
    rewrite(export_file(export_dir, "Leden"), old_email, "nieuw.adres@example.org")
    run = run_pipeline("people")
    change = RecordChange.objects.get(run=run, identifier=member.knvb_id)
    assert change.action == ChangeAction.UPDATED
    assert change.changes == {"email": [old_email, "nieuw.adres@example.org"]}


def test_leaving_is_a_retired_change_and_coming_back_a_restored_one(export_dir):
    run_pipeline("people")
    path = export_file(export_dir, "Leden")
    original = path.read_bytes()
    leaving = Member.objects.filter(parents__isnull=True).order_by("knvb_id").first()
    drop_member_line(export_dir, leaving.knvb_id)
    gone = run_pipeline("people")
    retired = RecordChange.objects.get(run=gone, identifier=leaving.knvb_id)
    assert retired.action == ChangeAction.RETIRED
    assert retired.changes == {"is_former": [False, True]}

    path.write_bytes(original)
    back = run_pipeline("people")
    restored = RecordChange.objects.get(run=back, identifier=leaving.knvb_id)
    assert restored.action == ChangeAction.RESTORED
    assert restored.changes["is_former"] == [True, False]


def test_teams_functions_discipline_and_contributions_file_their_changes(export_dir):
    run_pipeline("people")
    for name in ("teams", "functions", "discipline", "nikki"):
        run_pipeline(name)
    membership = TeamMembership.objects.select_related("member", "team").order_by("pk").first()
    change = RecordChange.objects.filter(identifier=membership.member.knvb_id, record_type="team membership",
                                         label__startswith=membership.team.name).first()
    assert change is not None and change.action == ChangeAction.CREATED
    team = Team.objects.order_by("pk").first()
    assert RecordChange.objects.filter(identifier=team.name, identifier_kind="team").exists()
    function = CommissieMembership.objects.select_related("member", "commissie").order_by("pk").first()
    assert RecordChange.objects.filter(identifier=function.member.knvb_id, record_type="commissie membership",
                                       label__startswith=function.commissie.name).exists()
    assert RecordChange.objects.filter(identifier=function.commissie.name, identifier_kind="commissie").exists()
    case = DisciplineCase.objects.order_by("pk").first()
    assert RecordChange.objects.filter(identifier=case.dossier_id, identifier_kind="dossier_id").exists()
    contribution = Contribution.objects.select_related("member").order_by("pk").first()
    assert RecordChange.objects.filter(identifier=contribution.member.knvb_id, record_type="contribution",
                                       label=str(contribution.year)).exists()


def test_a_closed_team_membership_is_a_retired_change_naming_the_team(export_dir):
    run_pipeline("people")
    run_pipeline("teams")
    membership = TeamMembership.objects.select_related("member", "team").order_by("pk").first()
    path = export_file(export_dir, "Teams")
    text = path.read_bytes().decode("cp1252")
    lines = text.split("\r\n")
    kept = [line for line in lines if not (membership.member.knvb_id in line and membership.team.name in line)]
    assert len(kept) < len(lines)
    path.write_bytes("\r\n".join(kept).encode("cp1252"))
    run = run_pipeline("teams")
    label = f"{membership.team.name} ({membership.role or 'no role'})"
    change = RecordChange.objects.get(run=run, identifier=membership.member.knvb_id, action=ChangeAction.RETIRED,
                                      label=label)
    assert change.changes["until"][0] is None
    assert change.changes["until"][1] == timezone.localdate().isoformat()


def test_a_dry_run_files_no_change(export_dir):
    run_pipeline("people", dry_run=True)
    assert not RecordChange.objects.exists()


def test_a_problem_opened_by_a_bad_row_is_resolved_by_a_corrected_export(export_dir):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        first = run_pipeline("people")
    problem = RecordProblem.objects.get(pipeline="people", identifier="ZZB01X1")
    assert problem.is_open and problem.failing_runs == 1 and problem.first_run == first
    assert "not a valid email" in problem.message

    with time_machine.travel(start + timedelta(hours=3), tick=False):
        second = run_pipeline("people")  # still bad
    problem.refresh_from_db()
    assert problem.is_open and problem.failing_runs == 2 and problem.last_run == second
    assert problem.first_seen_at == start and problem.last_seen_at == start + timedelta(hours=3)

    rewrite(export_file(export_dir, "Leden"), "jeroen.pietersen@@example.org", "jeroen.pietersen@example.org")
    with time_machine.travel(start + timedelta(hours=6), tick=False):
        third = run_pipeline("people")
    problem.refresh_from_db()
    assert not problem.is_open
    assert problem.resolution == RecordProblem.Resolution.FIXED and problem.resolved_run == third
    assert RecordChange.objects.get(run=third, identifier="ZZB01X1").action == ChangeAction.CREATED
    # The other bad rows are still bad: their problems stay open.
    assert RecordProblem.objects.filter(identifier="ZZB02X2", resolved_at__isnull=True).exists()


def test_a_problem_is_resolved_when_its_record_leaves(export_dir):
    run_pipeline("people")
    run_pipeline("nikki")
    member = Member.objects.order_by("knvb_id").first()
    # A nikki problem on this member, then the member leaves the Sportlink export.
    RecordProblem.objects.create(pipeline="nikki", identifier=member.knvb_id, message="old trouble")
    drop_member_line(export_dir, member.knvb_id)
    run = run_pipeline("people")
    problem = RecordProblem.objects.get(identifier=member.knvb_id)
    assert problem.resolution == RecordProblem.Resolution.LEFT and problem.resolved_run == run


def test_only_syncs_the_named_member_and_leaves_every_other_record_untouched(export_dir):
    run_pipeline("people")
    members = list(Member.objects.order_by("knvb_id")[:2])
    target, other = members
    before = {m.knvb_id: (m.last_synced_at, m.source_hash, m.is_former) for m in Member.objects.all()}
    # The export changes both, and drops a third member entirely.
    rewrite(export_file(export_dir, "Leden"), f'"{target.last_name}"', '"Nieuwenaam"')
    rewrite(export_file(export_dir, "Leden"), f'"{other.last_name}"', '"Anderenaam"')
    leaver = Member.objects.exclude(pk__in=[target.pk, other.pk]).filter(parents__isnull=True).first()
    drop_member_line(export_dir, leaver.knvb_id)

    run = run_pipeline("people", only=[target.knvb_id.lower()])
    assert run.only == [target.knvb_id.lower()]
    target.refresh_from_db()
    assert target.last_name == "Nieuwenaam"
    after = {m.knvb_id: (m.last_synced_at, m.source_hash, m.is_former) for m in Member.objects.all()}
    assert {code for code in after if after[code] != before[code]} == {target.knvb_id}
    assert not Member.objects.filter(is_former=True).exists()  # none retired
    assert list(RecordChange.objects.filter(run=run).values_list("identifier", flat=True)) == [target.knvb_id]


def test_only_leaves_other_team_memberships_open(export_dir):
    run_pipeline("people")
    run_pipeline("teams")
    open_before = TeamMembership.objects.filter(until__isnull=True).count()
    knvb_id = TeamMembership.objects.select_related("member").first().member.knvb_id
    run = run_pipeline("teams", only=[knvb_id])
    assert run.status in ("success", "partial")
    assert TeamMembership.objects.filter(until__isnull=True).count() == open_before
    assert not RecordChange.objects.filter(run=run, action=ChangeAction.RETIRED).exists()


def test_only_through_all_scopes_every_child(export_dir):
    run_pipeline("people")
    knvb_id = Member.objects.order_by("knvb_id").first().knvb_id
    parent = run_pipeline("all", only=[knvb_id])
    children = list(Run.objects.filter(parent=parent))
    assert children and all(child.only == [knvb_id] for child in children)
    assert not RecordChange.objects.filter(run__in=children).exclude(identifier=knvb_id).exists()


def test_the_record_page_shows_registry_values_and_destinations_in_fixed_queries(
        export_dir, client, django_assert_max_num_queries):
    from django.contrib.auth.models import Permission, User
    from django.urls import reverse

    run_pipeline("people")
    for name in ("teams", "functions", "nikki", "discipline"):
        run_pipeline(name)
    user = User.objects.create_user("volunteer", password="pw-123-secret", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="runs", codename__in=["view_run", "view_runerror", "trigger_run"]))
    client.force_login(user)
    busy = (Member.objects.filter(team_memberships__isnull=False, contributions__isnull=False)
            .order_by("knvb_id").first())
    url = reverse("runs:record", kwargs={"identifier": busy.knvb_id})
    with django_assert_max_num_queries(12):
        html = client.get(url).content.decode()
    assert busy.full_name in html and busy.city in html
    assert TeamMembership.objects.filter(member=busy).first().team.name in html
    assert "Laposta is not configured" in html and "FreeScout is not configured" in html
    assert f'action="{reverse("runs:sync-records", args=["people"])}"' in html

    parent = Parent.objects.exclude(children=None).first()
    html = client.get(reverse("runs:record", kwargs={"identifier": parent.email})).content.decode()
    assert parent.children.first().knvb_id in html and "parent" in html
    case = DisciplineCase.objects.select_related("member").first()
    html = client.get(reverse("runs:record", kwargs={"identifier": case.dossier_id})).content.decode()
    assert case.member.knvb_id in html and "Discipline case" in html
    team = Team.objects.first()
    assert client.get(reverse("runs:record", kwargs={"identifier": team.name})).status_code == 200
    commissie = CommissieMembership.objects.select_related("commissie").first().commissie
    html = client.get(reverse("runs:record", kwargs={"identifier": commissie.name})).content.decode()
    assert "Commissie" in html


def test_a_batch_costs_the_same_queries_for_10_or_300_changed_rows(django_assert_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from pipelines.sync import Upserter, existing_hashes
    from runs.pipeline import PipelineRun, Step, get_pipeline
    from runs.tracker import RunTracker

    tracker = RunTracker("people")
    tracker.run_id = Run.objects.create(pipeline="people").pk  # tracked, without a writer thread
    step = Step(PipelineRun(get_pipeline("people"), tracker), "rondo-club-sync")

    def sync(prefix, n, city):
        existing = existing_hashes(Member.objects.all(), "knvb_id")
        with CaptureQueriesContext(connection) as ctx, \
                Upserter(step, Member, existing=existing, fields=("city",), dry_run=False,
                         identifier_kind="knvb_id") as upserter:
            for i in range(n):
                upserter.add(None, key=f"{prefix}{i:05d}", values={"knvb_id": f"{prefix}{i:05d}", "city": city},
                             digest=city)
        return len(ctx.captured_queries)

    sync("A", 10, "Ede")
    sync("B", 300, "Ede")
    few, many = sync("A", 10, "Epe"), sync("B", 300, "Epe")
    assert few == many
    # Old values (one SELECT), the UPDATE and the change rows (one executemany each), in one
    # transaction; plus existing_hashes' one query before the batch.
    with django_assert_num_queries(few + 1):
        sync("B", 300, "Ede")
    changes = RecordChange.objects.filter(identifier="B00042", action=ChangeAction.UPDATED)
    assert [c.changes for c in changes.order_by("id")] == [{"city": ["Ede", "Epe"]}, {"city": ["Epe", "Ede"]}]
    assert RecordChange.objects.filter(action=ChangeAction.UPDATED).count() == 10 + 300 + 300


# --- a destination that was down: problems resolve on their own --------------------------

@pytest.fixture
def fake(httpserver, settings):
    """Laposta API v2 on a local server (the fake of tests/pipelines/laposta_fake.py)."""
    import re

    from runs.redact import clear_secret_cache

    server = laposta_tests.FakeLaposta()
    httpserver.expect_request(re.compile(r"^/v2/.*")).respond_with_handler(server)
    settings.LAPOSTA_API_KEY = laposta_tests.KEY
    settings.LAPOSTA_BASE_URL = httpserver.url_for("/v2")
    settings.LAPOSTA_MEMBERS_LIST_ID = laposta_tests.MEMBERS_LIST
    settings.LAPOSTA_PARENTS_LIST_ID = ""
    clear_secret_cache()
    yield server
    clear_secret_cache()


@pytest.fixture
def laposta_pipeline(sleeps, settings):
    """Only the Laposta steps on three members, honouring run.only like `people` does."""
    from pipelines.laposta import LapostaClient, laposta_steps
    from runs.pipeline import register, unregister

    @register("laposta-history")
    def pipeline(run):
        members = [m for m in laposta_tests.three() if run.in_scope(m.knvb_id)]
        laposta_steps(run, members=members, parents=[],
                      client=LapostaClient.from_settings(sleep=sleeps, max_retries=1))

    yield
    unregister("laposta-history")


def test_a_problem_from_a_destination_that_was_down_resolves_when_the_next_run_succeeds(fake, laposta_pipeline):
    fake.fail(status=500, email="bram@example.nl", times=None)
    first = run_pipeline("laposta-history")
    problem = RecordProblem.objects.get(pipeline="laposta-history")
    assert problem.identifier == "BBB2222" and problem.step_name == "laposta-submit" and problem.is_open
    assert first.status == "partial"

    fake.faults.clear()  # Laposta is back
    second = run_pipeline("laposta-history")
    problem.refresh_from_db()
    assert problem.resolution == RecordProblem.Resolution.FIXED and problem.resolved_run == second
    assert "bram@example.nl" in fake.lists[laposta_tests.MEMBERS_LIST]


def test_a_scoped_run_sends_only_its_member_and_deletes_nothing_from_laposta(fake, laposta_pipeline):
    run_pipeline("laposta-history")
    sent_before = len(fake.requests)
    run = run_pipeline("laposta-history", only=["AAA1111"])
    assert run.status == "success"
    assert sorted(fake.lists[laposta_tests.MEMBERS_LIST]) == ["anna@example.nl", "bram@example.nl", "cees@example.nl"]
    assert not [r for r in fake.requests[sent_before:] if r[0] == "DELETE"]
