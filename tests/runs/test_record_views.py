"""Record history pages: /records/<identifier>/, /problems/, links to records, Sync again, the API."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from runs.models import RecordChange, RecordProblem, Run, RunError, RunStep
from runs.records import Panel, RecordInfo, _panels, register_record_panel
from tests.runs.api.helpers import assert_matches_spec

XSS = "<script>alert(1)</script>"

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    user = User.objects.create_user("volunteer", password="pw-123-secret", is_staff=True)
    # The dashboard's view permissions (runs and errors) plus starting runs.
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="runs", codename__in=["view_run", "view_runerror", "trigger_run"]))
    return User.objects.get(pk=user.pk)


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def panel():
    """A registry panel like the club app's: one query per page."""

    def describe(identifier):
        if identifier == "ZZZ0000" or Run.objects.filter(pipeline=f"panel:{identifier}").exists():
            return None
        if not identifier.startswith("AAA"):
            return None
        return RecordInfo(title=f"Jan {XSS}", kind="member", pipelines=["sample"],
                          panels=[Panel("Registry", rows=[("City", f"Ede {XSS}")]), Panel("Laposta", empty="none")])

    register_record_panel(describe)
    yield
    _panels.remove(describe)


def history(identifier="AAA1111", *, n=1, start=None, problem=True):
    start = start or timezone.now() - timedelta(days=n)
    run = Run.objects.create(pipeline="sample", status="partial", started_at=start, error_count=n)
    step = RunStep.objects.create(run=run, position=1, name="sample-sync")
    RecordChange.objects.bulk_create([
        RecordChange(run=run, pipeline="sample", step_name="sample-sync", identifier=identifier,
                     identifier_kind="knvb_id", record_type="member", action="updated",
                     changes={"email": [f"old{i}@example.org", f"new{i}{XSS}@example.org"]},
                     created_at=start + timedelta(minutes=i))
        for i in range(n)
    ])
    RunError.objects.bulk_create([
        RunError(run=run, step=step, pipeline="sample", step_name="sample-sync", identifier=identifier,
                 identifier_kind="knvb_id", message=f"bad {XSS} {i}", traceback=f"Traceback {i}",
                 created_at=start + timedelta(minutes=i))
        for i in range(n)
    ])
    if problem:
        RecordProblem.objects.create(pipeline="sample", identifier=identifier, identifier_kind="knvb_id",
                                     message=f"still bad {XSS}", first_seen_at=start, last_seen_at=start,
                                     first_run=run, last_run=run)
    return run


def test_the_record_page_tells_the_story_with_both_values_of_a_change(staff_client, panel):
    run = history()
    response = staff_client.get(reverse("runs:record", kwargs={"identifier": "AAA1111"}))
    html = response.content.decode()
    assert response.status_code == 200
    assert "old0@example.org" in html and "new0&lt;script&gt;" in html  # both values, escaped
    assert XSS not in html
    assert "Jan &lt;script&gt;" in html and "Ede &lt;script&gt;" in html  # the panel, escaped
    assert "<details><summary>bad &lt;script&gt;" in html and "Traceback 0" in html  # expandable traceback
    assert "still bad &lt;script&gt;" in html and "<strong>open</strong>" in html
    assert f'href="{run.get_absolute_url()}"' in html


def test_sync_again_posts_the_identifier_with_csrf_and_needs_the_permission(client, staff, panel):
    history()
    client.force_login(staff)
    url = reverse("runs:record", kwargs={"identifier": "AAA1111"})
    html = client.get(url).content.decode()
    action = reverse("runs:sync-records", args=["sample"])
    assert f'action="{action}"' in html and 'name="csrfmiddlewaretoken"' in html
    assert 'name="only" value="AAA1111"' in html

    staff.user_permissions.clear()
    client.force_login(User.objects.get(pk=staff.pk))
    assert f'action="{action}"' not in client.get(url).content.decode()
    assert client.post(action, {"only": "AAA1111"}).status_code == 403
    assert client.get(action).status_code == 405


def test_sync_again_queues_a_scoped_run(staff_client, settings, django_capture_on_commit_callbacks):
    from django_q.models import OrmQ

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    action = reverse("runs:sync-records", args=["sample"])
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(action, {"only": " AAA1111 ", "next": "/records/AAA1111/"})
    assert response.status_code == 302 and response.url == "/records/AAA1111/"
    task = OrmQ.objects.get().task
    assert task["args"] == ("sample",) and task["kwargs"]["only"] == ["AAA1111"]
    response = staff_client.post(action, {"only": "  "})
    assert response.status_code == 302 and OrmQ.objects.count() == 1


def test_an_unknown_identifier_is_404_and_pages_need_staff(client, staff, panel):
    assert client.get(reverse("runs:record", kwargs={"identifier": "AAA1111"})).status_code == 302
    assert client.get(reverse("runs:problems")).status_code == 302
    client.force_login(staff)
    assert client.get(reverse("runs:record", kwargs={"identifier": "ZZZ0000"})).status_code == 404


def test_emails_and_team_names_with_spaces_and_slashes_have_a_record_page(staff_client):
    for identifier in ("ouder@example.org", "JO11-1 / zaterdag"):
        history(identifier)
        url = reverse("runs:record", kwargs={"identifier": identifier})
        response = staff_client.get(url)
        assert response.status_code == 200, url
        assert "still bad" in response.content.decode()


def test_the_record_page_takes_a_fixed_number_of_queries(staff_client, panel, django_assert_max_num_queries):
    history(n=2)
    url = reverse("runs:record", kwargs={"identifier": "AAA1111"})
    with CaptureQueriesContext(connection) as small:
        assert staff_client.get(url).status_code == 200
    history(n=300, start=timezone.now() - timedelta(days=30), problem=False)
    with django_assert_max_num_queries(len(small.captured_queries)):
        html = staff_client.get(url).content.decode()
    assert "The newest 100 changes are shown" in html
    assert len(small.captured_queries) <= 12  # session, user, 5 panel lookups, changes, errors, problems


def test_identifiers_link_to_their_record_everywhere(staff_client):
    run = history()
    record = reverse("runs:record", kwargs={"identifier": "AAA1111"})
    pages = [run.get_absolute_url(), reverse("runs:errors"), reverse("runs:errors") + "?view=grouped",
             reverse("runs:problems"), reverse("runs:pipeline", args=["sample"])]
    for url in pages:
        assert f'href="{record}"' in staff_client.get(url).content.decode(), url
    admin = User.objects.create_superuser("root", password="pw-root-123")
    staff_client.force_login(admin)
    for url in [reverse("admin:runs_runerror_changelist"), reverse("admin:runs_run_change", args=[run.pk]),
                reverse("admin:runs_recordproblem_changelist"), reverse("admin:runs_recordchange_changelist")]:
        assert f'href="{record}"' in staff_client.get(url).content.decode(), url


def test_problems_lists_open_ones_newest_first_and_filters(staff_client):
    now = timezone.now()
    RecordProblem.objects.bulk_create([
        RecordProblem(pipeline="sample", identifier="AAA1111", message="first-msg",
                      first_seen_at=now - timedelta(days=9), last_seen_at=now - timedelta(days=2)),
        RecordProblem(pipeline="clean", identifier="AAB2222", message="second-msg",
                      first_seen_at=now - timedelta(days=3), last_seen_at=now - timedelta(days=1)),
        RecordProblem(pipeline="sample", identifier="BBB3333", message="was fixed", resolution="fixed",
                      resolved_at=now - timedelta(hours=1)),
    ])
    html = staff_client.get(reverse("runs:problems")).content.decode()
    assert html.index("second-msg") < html.index("first-msg") and "was fixed" not in html
    assert "1 week ago" in html  # failing since
    html = staff_client.get(reverse("runs:problems"), {"pipeline": "sample"}).content.decode()
    assert "first-msg" in html and "second-msg" not in html
    html = staff_client.get(reverse("runs:problems"), {"identifier": "AA", "match": "prefix"}).content.decode()
    assert "first-msg" in html and "second-msg" in html
    html = staff_client.get(reverse("runs:problems"), {"identifier": "AAA1111", "match": "exact"}).content.decode()
    assert "first-msg" in html and "second-msg" not in html
    html = staff_client.get(reverse("runs:problems"), {"state": "resolved"}).content.decode()
    assert "was fixed" in html and "first-msg" not in html


def test_the_overview_counts_open_problems_and_the_pipeline_page_lists_them(staff_client):
    RecordProblem.objects.bulk_create([RecordProblem(pipeline="sample", identifier=f"ID{i}", message=f"m{i}")
                                       for i in range(3)] +
                                      [RecordProblem(pipeline="sample", identifier="ID9", message="m",
                                                     resolved_at=timezone.now())])
    html = staff_client.get(reverse("runs:overview")).content.decode()
    assert f'href="{reverse("runs:problems")}?pipeline=sample">3 open problems</a>' in html
    html = staff_client.get(reverse("runs:pipeline", args=["sample"])).content.decode()
    assert "m0" in html and "m2" in html and "ID9" not in html


def test_a_scoped_run_shows_its_scope_on_its_page_and_in_the_api(staff_client, staff):
    staff.user_permissions.add(Permission.objects.get(codename="view_run"))
    run = Run.objects.create(pipeline="sample", status="success", only=["AAA1111"])
    html = staff_client.get(run.get_absolute_url()).content.decode()
    assert "Scoped run" in html and reverse("runs:record", kwargs={"identifier": "AAA1111"}) in html
    body = assert_matches_spec(staff_client.get(reverse("api:run", args=[run.pk])))
    assert body["only"] == ["AAA1111"]


# --- API ---------------------------------------------------------------------------------


def test_api_problems_lists_open_ones_with_a_cursor_and_resolved_on_request(staff_client, staff):
    # A problem carries a record's latest error message: the API asks for the errors' permission too.
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_run", "view_runerror"]))
    now = timezone.now()
    RecordProblem.objects.bulk_create(
        [RecordProblem(pipeline="sample", identifier=f"ID{i:02d}", message=f"m{i}", last_seen_at=now - timedelta(
            minutes=i)) for i in range(5)]
        + [RecordProblem(pipeline="sample", identifier="FIXED", message="m", resolution="fixed", resolved_at=now)])
    body = assert_matches_spec(staff_client.get("/api/problems/", {"limit": 3}))
    assert [p["identifier"] for p in body["results"]] == ["ID00", "ID01", "ID02"]
    body = assert_matches_spec(staff_client.get(body["next"]))
    assert [p["identifier"] for p in body["results"]] == ["ID03", "ID04"] and body["next"] is None
    body = assert_matches_spec(staff_client.get("/api/problems/", {"state": "resolved"}))
    assert [p["identifier"] for p in body["results"]] == ["FIXED"] and body["results"][0]["resolution"] == "fixed"
    body = assert_matches_spec(staff_client.get("/api/problems/", {"identifier": "ID0", "match": "prefix"}))
    assert len(body["results"]) == 5
    assert staff_client.get("/api/problems/", {"state": "maybe"}).status_code == 400
    assert Client().get("/api/problems/").status_code == 401


def test_api_trigger_accepts_only_and_rejects_a_bad_scope(staff, settings, django_capture_on_commit_callbacks):
    from django_q.models import OrmQ

    from runs.models import ApiToken

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    raw = ApiToken.generate()
    token = ApiToken(user=staff, name="t")
    token.set_token(raw)
    token.save()
    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    for body in ('{"only": "AAA1111"}', '{"only": []}', '{"only": [""]}', "not json", '{"other": 1}'):
        response = api.post("/api/pipelines/sample/run/", body, content_type="application/json")
        assert response.status_code == 400, body
        assert_matches_spec(response, "POST")
    assert not OrmQ.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/pipelines/sample/run/", {"only": ["AAA1111"]}, content_type="application/json")
    assert response.status_code == 202
    assert "AAA1111" in assert_matches_spec(response, "POST")["message"]
    assert OrmQ.objects.get().task["kwargs"]["only"] == ["AAA1111"]


def test_an_identifier_no_url_can_carry_is_shown_escaped_without_a_link():
    from runs.templatetags.runs_extras import record_link

    assert str(record_link("AAA1111")) == '<a href="/records/AAA1111/" class="record-link">AAA1111</a>'
    assert record_link(f"two\nlines {XSS}") == f"two\nlines {XSS}"  # autoescaped by the template: a plain str
    assert record_link("") == ""
