# ruff: noqa: F811 (the fixtures `fake` and `pipeline` come from tests/pipelines/laposta_fake.py)
"""Laposta steps against a local Laposta API v2: what is created, updated, skipped, deleted and linked."""

from datetime import date

import pytest

from pipelines.laposta import payload_hash
from pipelines.models import LapostaSubscription
from pipelines.records import ParentRecord
from runs.runner import run_pipeline
from tests.pipelines.laposta_fake import (  # noqa: F401 (fake and pipeline are fixtures)
    MEMBERS_LIST,
    PARENTS_LIST,
    counts,
    fake,
    member,
    pipeline,
    step,
    three,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_new_members_and_parents_are_created_with_their_custom_fields(fake, pipeline):
    parents = [ParentRecord(email="ouder.berg@example.nl", name="Petra van der Berg", phone="0612345678",
                            children=["AAA1111"])]
    run = pipeline(three(), parents)
    assert run.status == "success"
    prepare, submit = step(run, "laposta-prepare"), step(run, "laposta-submit")
    assert counts(prepare) == (4, 0, 0, 0)
    assert (submit.status, submit.read, submit.failed) == ("success", 4, 0)
    assert submit.detail == {"sent": 4, "deleted": 0}
    anna = fake.lists[MEMBERS_LIST]["anna@example.nl"]
    assert anna["custom_fields"]["voornaam"] == "Anna"
    assert anna["custom_fields"]["tussenvoegsel"] == "van der"
    assert anna["custom_fields"]["geboortedatum"] == "2012-05-01"
    assert anna["custom_fields"]["teams"] == "JO13-1"
    assert "bram@example.nl" in fake.lists[MEMBERS_LIST]  # normalised
    parent = fake.lists[PARENTS_LIST]["ouder.berg@example.nl"]
    assert parent["custom_fields"] == {"naam": "Petra van der Berg", "telefoon": "0612345678",
                                       "kinderen": "Anna van der Berg", "teams": "JO13-1"}
    # Every POST is an upsert with the list id and an ip, form-encoded.
    for _, path, form in fake.sent("POST"):
        assert path == "/member" and form["options[upsert]"] == "true" and form["ip"]
    sub = LapostaSubscription.objects.get(list_id=MEMBERS_LIST, email="anna@example.nl")
    assert sub.laposta_member_id == anna["member_id"]
    assert sub.payload_hash and sub.synced_at is not None


def test_a_second_run_sends_nothing_for_unchanged_members(fake, pipeline):
    pipeline(three())
    before = len(fake.requests)
    run = pipeline(three())
    assert run.status == "success"
    assert counts(step(run, "laposta-prepare")) == (0, 0, 3, 0)
    assert len(fake.requests) == before
    assert step(run, "laposta-submit").read == 0


def test_a_changed_member_is_updated_with_an_upsert(fake, pipeline):
    pipeline(three())
    old_hash = LapostaSubscription.objects.get(email="cees@example.nl").payload_hash
    changed = three()
    changed[2].teams = ["Veteranen"]
    run = pipeline(changed)
    assert counts(step(run, "laposta-prepare")) == (0, 1, 2, 0)
    (post,) = fake.sent("POST")[3:]
    assert post[2]["email"] == "cees@example.nl" and post[2]["custom_fields[teams]"] == "Veteranen"
    assert fake.lists[MEMBERS_LIST]["cees@example.nl"]["custom_fields"]["teams"] == "Veteranen"
    sub = LapostaSubscription.objects.get(list_id=MEMBERS_LIST, email="cees@example.nl")
    sent_fields = {k[len("custom_fields["):-1]: v for k, v in post[2].items() if k.startswith("custom_fields[")}
    assert sub.payload_hash == payload_hash("cees@example.nl", sent_fields) != old_hash
    assert LapostaSubscription.objects.count() == 3


def test_a_member_who_left_is_deleted_from_the_list(fake, pipeline):
    pipeline(three())
    run = pipeline(three()[:2])
    prepare, submit = step(run, "laposta-prepare"), step(run, "laposta-submit")
    assert prepare.detail["to_delete"] == 1
    assert submit.detail == {"sent": 0, "deleted": 1}
    (delete,) = fake.sent("DELETE")
    assert delete[1].startswith("/member/m")  # by the stored Laposta member id
    assert "cees@example.nl" not in fake.lists[MEMBERS_LIST]
    assert not LapostaSubscription.objects.filter(email="cees@example.nl").exists()


def test_a_member_already_gone_from_laposta_is_forgotten_without_an_error(fake, pipeline):
    pipeline(three())
    del fake.lists[MEMBERS_LIST]["cees@example.nl"]  # removed by hand in Laposta
    run = pipeline(three()[:2])
    assert run.status == "success"
    assert not LapostaSubscription.objects.filter(email="cees@example.nl").exists()


def test_dry_run_counts_and_sends_nothing(fake, pipeline):
    run = pipeline(three(), dry_run=True)
    assert run.status == "success"
    assert counts(step(run, "laposta-prepare")) == (3, 0, 0, 0)
    submit = step(run, "laposta-submit")
    assert submit.status == "skipped"
    assert "Dry run" in submit.reason
    assert fake.requests == []
    assert not LapostaSubscription.objects.exists()


def test_not_configured_both_steps_are_skipped_with_the_reason(fake, pipeline, settings):
    settings.LAPOSTA_API_KEY = ""
    run = pipeline(three())
    assert (run.status, run.message) == ("skipped", "Not configured: LAPOSTA_API_KEY is not set.")
    for name in ("laposta-prepare", "laposta-submit"):
        s = step(run, name)
        assert (s.status, s.reason) == ("skipped", "LAPOSTA_API_KEY is not set")
    assert fake.requests == []


def test_without_list_ids_the_reason_names_the_variables(fake, pipeline, settings):
    settings.LAPOSTA_MEMBERS_LIST_ID = ""
    settings.LAPOSTA_PARENTS_LIST_ID = ""
    run = pipeline(three())
    s = step(run, "laposta-prepare")
    assert s.status == "skipped"
    assert "LAPOSTA_MEMBERS_LIST_ID" in s.reason and "LAPOSTA_PARENTS_LIST_ID" in s.reason


def test_only_the_configured_list_is_synced(fake, pipeline, settings):
    settings.LAPOSTA_PARENTS_LIST_ID = ""
    run = pipeline(three(), [ParentRecord(email="ouder@example.nl", children=["AAA1111"])])
    prepare = step(run, "laposta-prepare")
    assert counts(prepare) == (3, 0, 0, 0)
    assert "LAPOSTA_PARENTS_LIST_ID is not set" in prepare.detail["parents_list"]
    assert PARENTS_LIST not in fake.lists


def test_siblings_sharing_an_email_are_one_laposta_member(fake, pipeline):
    members = [
        member("KID0001", "gezin@example.nl", first_name="Kim", birth_date=date(2014, 1, 1)),
        member("KID0002", "gezin@example.nl", first_name="Lars", birth_date=date(2011, 1, 1)),
    ]
    run = pipeline(members)
    assert run.status == "success"
    assert fake.lists[MEMBERS_LIST]["gezin@example.nl"]["custom_fields"]["voornaam"] == "Lars"
    assert step(run, "laposta-prepare").detail["shared_email"] == 1
    run = pipeline(list(reversed(members)))  # export order does not flip the payload
    assert counts(step(run, "laposta-prepare")) == (0, 0, 1, 0)


def test_an_export_without_parents_does_not_empty_the_parents_list(fake, pipeline):
    pipeline(three(), [ParentRecord(email="ouder@example.nl", name="Ouder", children=["AAA1111"])])
    run = pipeline(three(), [])
    assert fake.sent("DELETE") == []
    assert "withheld" in step(run, "laposta-prepare").detail
    assert "ouder@example.nl" in fake.lists[PARENTS_LIST]


def test_the_registry_links_are_stored_when_the_member_exists(fake, pipeline):
    from pipelines.models import Member, Parent

    anna = Member.objects.create(knvb_id="AAA1111", first_name="Anna", email="anna@example.nl")
    parent = Parent.objects.create(email="ouder@example.nl", name="Ouder")
    pipeline(three(), [ParentRecord(email="ouder@example.nl", name="Ouder", children=["AAA1111"])])
    assert LapostaSubscription.objects.get(email="anna@example.nl").member_id == anna.pk
    assert LapostaSubscription.objects.get(list_id=PARENTS_LIST).parent_id == parent.pk


def test_people_links_the_subscriptions_of_its_first_run_to_the_registry(export_dir, fake):
    # laposta-submit comes before rondo-club-sync: on the first run the members
    # are not in the registry yet when their subscriptions are stored.
    run = run_pipeline("people")
    assert step(run, "laposta-submit").status in ("success", "partial")
    subscriptions = LapostaSubscription.objects.all()
    assert subscriptions.exists()
    members = subscriptions.filter(list_id=MEMBERS_LIST)
    parents = subscriptions.filter(list_id=PARENTS_LIST)
    assert members.exists() and not members.filter(member__isnull=True).exists()
    assert parents.exists() and not parents.filter(parent__isnull=True).exists()
    sample = members.select_related("member").first()
    assert sample.member.email.lower() == sample.email
    assert step(run, "rondo-club-sync").detail["laposta_links"] == subscriptions.count()
