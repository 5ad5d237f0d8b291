"""runs.selectors: each query returns what its page needs, at a cost bounded by its LIMIT."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from runs import selectors
from runs.models import RecordChange, RecordProblem, Run, RunError, RunStatus, RunStep, StepStatus

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def run(pipeline="sample", status=RunStatus.SUCCESS, *, minutes_ago=0, **fields):
    started = NOW - timedelta(minutes=minutes_ago)
    return Run.objects.create(pipeline=pipeline, status=status, started_at=started, finished_at=started, **fields)


def queries(func):
    with CaptureQueriesContext(connection) as captured:
        result = func()
    return len(captured), result


def error(of, *, step=None, identifier="", message="bad row", minutes_ago=0):
    return RunError.objects.create(run=of, pipeline=of.pipeline, step=step, step_name=step.name if step else "",
                                   identifier=identifier, message=message,
                                   created_at=NOW - timedelta(minutes=minutes_ago))


def test_recent_runs_per_pipeline_is_one_query_newest_first_without_the_excluded():
    for minutes in range(10, 0, -1):
        run("sample", minutes_ago=minutes)
    held = run("sample", RunStatus.SKIPPED, minutes_ago=0)
    run("clean", RunStatus.FAILED, minutes_ago=3)
    count, recent = queries(lambda: selectors.recent_runs_per_pipeline(["sample", "clean", "boom"], 3))
    assert count == 1
    assert [r.started_at for r in recent["sample"]] == sorted((r.started_at for r in recent["sample"]), reverse=True)
    assert recent["sample"][0] == held and len(recent["sample"]) == 3
    assert [r.status for r in recent["clean"]] == [RunStatus.FAILED] and recent["boom"] == []
    outcomes = selectors.recent_runs_per_pipeline(["sample"], 2, exclude_statuses=(RunStatus.SKIPPED,))
    assert held not in outcomes["sample"] and len(outcomes["sample"]) == 2
    assert selectors.recent_runs_per_pipeline([], 5) == {}


def test_latest_runs_has_every_field_in_two_queries():
    run("sample", minutes_ago=5)
    last = run("sample", RunStatus.PARTIAL, minutes_ago=1, message="three rows failed", host="box")
    run("clean", minutes_ago=2)
    count, latest = queries(lambda: selectors.latest_runs(["sample", "clean", "boom"]))
    assert count == 2
    assert latest["sample"] == last and set(latest) == {"sample", "clean"}
    with CaptureQueriesContext(connection) as more:
        assert latest["sample"].host == "box"  # not deferred: runsync --list prints it
    assert len(more) == 0


def test_the_pipeline_chart_is_the_last_window_oldest_first(settings):
    Run.objects.bulk_create([Run(pipeline="sample", status=RunStatus.SUCCESS, started_at=NOW - timedelta(hours=i))
                             for i in range(selectors.CHART_WINDOW + 20)])
    count, chart = queries(lambda: selectors.pipeline_chart_runs("sample"))
    assert count == 1 and len(chart) == selectors.CHART_WINDOW
    assert chart[-1].started_at == NOW and chart == sorted(chart, key=lambda r: r.started_at)


def test_a_parent_run_lists_its_children_and_their_errors_in_run_order():
    parent = run("family", minutes_ago=5)
    first, second = run("clean", parent=parent, minutes_ago=4), run("boom", parent=parent, minutes_ago=3)
    step_a = RunStep.objects.create(run=parent, position=1, name="clean", status=StepStatus.SUCCESS,
                                    detail={"child_run": first.pk})
    step_b = RunStep.objects.create(run=parent, position=2, name="boom", status=StepStatus.FAILED,
                                    detail={"child_run": second.pk})
    error(second, message="second's")
    error(first, message="first's", identifier="ABC1234")
    children = selectors.child_runs(parent)
    assert children == [first, second]
    assert [e.message for e in selectors.run_errors(parent, children=children)] == ["first's", "second's"]
    assert [e.message for e in selectors.run_errors(parent, step_id=step_b.pk, children=children)] == ["second's"]
    assert list(selectors.run_errors(parent, step_id=step_a.pk, children=children, q="nothing")) == []
    assert [e.message for e in selectors.run_errors(parent, q="ABC", children=children)] == ["first's"]
    assert selectors.run_steps(parent) == [step_a, step_b]


def test_run_errors_of_one_run_in_step_order_searched_by_prefix_or_message():
    one = run()
    late = RunStep.objects.create(run=one, position=2, name="late", status=StepStatus.PARTIAL)
    early = RunStep.objects.create(run=one, position=1, name="early", status=StepStatus.PARTIAL)
    error(one, step=late, identifier="XYZ9", message="no email")
    error(one, step=early, identifier="ABC1", message="bad date")
    # By step id (the runerror_run_step index), so the step made first comes first.
    assert [e.identifier for e in selectors.run_errors(one)] == ["XYZ9", "ABC1"]
    assert [e.identifier for e in selectors.run_errors(one, q="AB")] == ["ABC1"]
    assert [e.identifier for e in selectors.run_errors(one, q="email")] == ["XYZ9"]
    assert [e.identifier for e in selectors.run_errors(one, step_id=early.pk)] == ["ABC1"]
    detail = selectors.run_detail(one.pk)
    with CaptureQueriesContext(connection) as more:
        assert detail.triggered_by is None and detail.parent is None  # joined, not asked again
    assert len(more) == 0


def test_grouped_errors_count_runs_and_first_and_last_seen():
    older, newer = run(minutes_ago=60), run(minutes_ago=1)
    error(older, identifier="ABC1", message="bad date", minutes_ago=60)
    error(newer, identifier="ABC1", message="bad date", minutes_ago=1)
    error(newer, identifier="ABC1", message="bad date", minutes_ago=1)
    error(newer, identifier="XYZ9", message="no email", minutes_ago=2)
    groups = selectors.grouped_errors(selectors.errors_queryset(), bounded_by_identifier=False)
    assert [(g["identifier"], g["count"], g["runs"]) for g in groups] == [("ABC1", 3, 2), ("XYZ9", 1, 1)]
    assert groups[0]["first_seen"] == NOW - timedelta(minutes=60)
    one = selectors.grouped_errors(selectors.errors_queryset().filter(identifier="XYZ9"), bounded_by_identifier=True)
    assert [g["message"] for g in one] == ["no email"]
    assert list(selectors.errors_of_pipeline(selectors.errors_queryset(), "clean")) == []


def test_the_runs_and_errors_lists_are_newest_first():
    old, new = run(minutes_ago=10), run(minutes_ago=1)
    assert list(selectors.runs_queryset()) == [new, old]
    error(old, message="old", minutes_ago=10)
    error(new, message="new", minutes_ago=1)
    assert [e.message for e in selectors.errors_queryset()] == ["new", "old"]
    assert selectors.identifier_prefix_q("AB") is not None


def test_a_record_page_gets_its_changes_errors_and_problems_open_first():
    one = run()
    for minutes in (3, 1, 2):
        RecordChange.objects.create(run=one, pipeline="sample", identifier="ABC1", action="updated",
                                    created_at=NOW - timedelta(minutes=minutes))
    RecordChange.objects.create(run=one, pipeline="sample", identifier="OTHER", action="created")
    error(one, identifier="ABC1", message="bad date")
    resolved = RecordProblem.objects.create(pipeline="sample", identifier="ABC1", message="was wrong",
                                            last_seen_at=NOW, resolved_at=NOW)
    open_ = RecordProblem.objects.create(pipeline="sample", identifier="ABC1", message="is wrong",
                                         last_seen_at=NOW - timedelta(days=1))
    changes = selectors.record_changes("ABC1", limit=2)
    assert [c.created_at for c in changes] == [NOW - timedelta(minutes=1), NOW - timedelta(minutes=2)]
    assert [e.message for e in selectors.record_errors("ABC1")] == ["bad date"]
    assert selectors.record_problems("ABC1") == [open_, resolved]
    assert list(selectors.problems_queryset()) == [open_]
    assert list(selectors.problems_queryset(resolved=True)) == [resolved]
    assert selectors.pipeline_open_problems("sample") == [open_]


def test_open_problem_counts_are_capped_and_one_query_for_every_pipeline():
    RecordProblem.objects.bulk_create([RecordProblem(pipeline="sample", identifier=f"ID{i}", message="x")
                                       for i in range(7)])
    RecordProblem.objects.create(pipeline="clean", identifier="ID", message="x", resolved_at=NOW)
    count, counts = queries(lambda: selectors.open_problem_counts(["sample", "clean", "boom"], cap=5))
    assert count == 1
    assert counts == {"sample": 5, "clean": 0, "boom": 0}
    assert selectors.open_problem_counts([]) == {}
