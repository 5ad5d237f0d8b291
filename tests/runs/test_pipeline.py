import pytest

from runs.models import Run, RunError, RunStep
from runs.pipeline import UnknownPipeline, get_pipeline, register, unregister
from runs.runner import run_pipeline

pytestmark = pytest.mark.django_db(transaction=True)


def steps_of(run):
    return [(s.name, s.status) for s in RunStep.objects.filter(run=run).order_by("position")]


def test_items_that_raise_become_errors_and_the_loop_goes_on():
    run = run_pipeline("sample")
    assert run.status == "partial"
    assert steps_of(run) == [
        ("sample-download", "success"),
        ("sample-sync", "partial"),
        ("sample-submit", "skipped"),
    ]
    sync = RunStep.objects.get(run=run, name="sample-sync")
    assert (sync.created, sync.failed, sync.total) == (2, 1, 3)
    assert RunStep.objects.get(run=run, name="sample-download").read == 3
    assert RunStep.objects.get(run=run, name="sample-submit").reason == "SAMPLE_API_KEY is not set"
    (error,) = RunError.objects.filter(run=run)
    assert (error.identifier, error.identifier_kind, error.step_name) == ("c@example.org", "email", "sample-sync")
    assert error.pipeline == "sample"  # copied from the run for the explorer's pipeline filter
    assert error.step_id == sync.pk
    assert "ZeroDivisionError: division by zero" in error.traceback
    # Totals are the sync steps' counts; the download's `read` is not a creation.
    assert (run.created, run.failed, run.error_count) == (2, 1, 1)


def test_a_critical_step_that_raises_fails_the_run_and_stops_it():
    run = run_pipeline("boom")
    assert run.status == "failed"
    assert run.message == "the export is unreadable"
    assert steps_of(run) == [("boom-download", "success"), ("boom-sync", "failed")]
    (error,) = RunError.objects.filter(run=run)  # recorded once, by the step
    assert error.step_name == "boom-sync" and "RuntimeError" in error.traceback
    assert RunStep.objects.get(run=run, name="boom-sync").reason == "the export is unreadable"


def test_a_non_critical_step_that_raises_makes_the_run_partial():
    run = run_pipeline("soft")
    assert run.status == "partial"
    assert steps_of(run) == [("soft-photos", "failed"), ("soft-sync", "success")]
    assert run.created == 2


def test_rows_survive_a_rolled_back_atomic_block():
    run = run_pipeline("rollback")
    assert run.status == "partial"
    assert sorted(RunError.objects.filter(run=run).values_list("identifier", flat=True)) == [
        "RB00000", "RB00001", "RB00002"]
    assert RunStep.objects.get(run=run).failed == 3


def test_a_step_can_skip_itself_with_a_reason():
    @register("skipper")
    def skipper(run):
        with run.step("laposta-submit") as step:
            step.skip("LAPOSTA_API_KEY is not set")
        with run.step("after") as step:
            step.created()

    try:
        run = run_pipeline("skipper")
    finally:
        unregister("skipper")
    assert run.status == "success"
    assert steps_of(run) == [("laposta-submit", "skipped"), ("after", "success")]
    assert RunStep.objects.get(run=run, name="laposta-submit").reason == "LAPOSTA_API_KEY is not set"


def test_cancellation_is_honoured_at_the_next_step():
    run = run_pipeline("selfcancel")
    assert run.status == "cancelled"
    assert steps_of(run) == [("first", "success")]


def test_cancellation_is_honoured_at_the_next_item():
    seen = []

    @register("itemcancel")
    def itemcancel(run):
        with run.step("sync") as step:
            for i in range(100):
                with step.item({"knvb_id": f"K{i}"}):
                    seen.append(i)
                    if i == 0:
                        Run.objects.get(pk=run.run_id).request_cancel()
                        # The writer thread notices within a flush interval.
                        assert run.tracker.cancel_event.wait(timeout=10)
                    step.updated()

    try:
        run = run_pipeline("itemcancel")
    finally:
        unregister("itemcancel")
    assert seen == [0]
    assert run.status == "cancelled"
    assert steps_of(run) == [("sync", "cancelled")]
    assert RunStep.objects.get(run=run).updated == 1


def test_child_runs_are_tracked_under_the_parent_which_ends_with_the_worst_status():
    parent = run_pipeline("family")
    assert parent.status == "failed"
    children = list(Run.objects.filter(parent=parent).order_by("id"))
    assert [(c.pipeline, c.status) for c in children] == [
        ("sample", "partial"), ("clean", "success"), ("boom", "failed")]
    assert steps_of(parent) == [("sample", "partial"), ("clean", "success"), ("boom", "failed")]
    step = RunStep.objects.get(run=parent, name="sample")
    assert step.detail == {"child_run": children[0].pk}
    assert (parent.created, parent.updated) == (2, 5)


def test_only_a_run_the_runner_started_can_start_child_runs():
    from runs.pipeline import PipelineRun
    from runs.tracker import RunTracker

    run = PipelineRun(get_pipeline("family"), RunTracker("family"))  # no run_pipeline handed over
    with pytest.raises(RuntimeError, match="not started by the runner"):
        run.run_child("clean")
    assert not Run.objects.exists()


def test_registering_an_invalid_schedule_is_refused():
    with pytest.raises(ValueError, match="invalid cron"):
        register("bad", schedule="every morning")(lambda run: None)


def test_an_unknown_pipeline_names_the_known_ones():
    with pytest.raises(UnknownPipeline) as info:
        get_pipeline("peopel")
    assert "peopel" in str(info.value) and "sample" in str(info.value)


def test_dry_run_is_passed_to_the_pipeline():
    flags = []

    @register("dry")
    def dry(run):
        flags.append(run.dry_run)

    try:
        run = run_pipeline("dry", dry_run=True)
    finally:
        unregister("dry")
    assert flags == [True] and run.dry_run is True


def test_nested_items_and_items_on_other_threads_each_keep_their_own_record():
    import threading

    @register("nested-items")
    def nested(run):
        with run.step("sync") as step:
            for parent in ("P1", "P2"):
                with step.item({"knvb_id": parent}):
                    with step.item({"knvb_id": f"{parent}-child"}):
                        raise ValueError("child failed")
                    if parent == "P2":
                        raise ValueError("the parent failed after its child")
                    step.updated()
            with step.item({"knvb_id": "P3"}):
                raise ValueError("parent failed after its children")

            def worker(name):
                with step.item({"knvb_id": name}):
                    raise ValueError(f"{name} failed")

            threads = [threading.Thread(target=worker, args=(f"T{i}",)) for i in range(3)]
            with step.item({"knvb_id": "MAIN"}):
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                raise ValueError("main failed")

    try:
        run = run_pipeline("nested-items")
    finally:
        unregister("nested-items")
    errors = dict(RunError.objects.filter(run=run).values_list("identifier", "message"))
    assert errors == {"P1-child": "child failed", "P2-child": "child failed", "P2": "the parent failed after its child",
                      "P3": "parent failed after its children", "T0": "T0 failed", "T1": "T1 failed",
                      "T2": "T2 failed", "MAIN": "main failed"}
    step = RunStep.objects.get(run=run)
    assert (step.updated, step.failed) == (1, 8)


def test_a_finished_runs_steps_and_items_are_freed_at_once_not_left_for_the_garbage_collector():
    import gc
    import weakref

    refs = []

    @register("freed")
    def freed(run):
        with run.step("sync") as step:
            refs.append(weakref.ref(step))
            for i in range(3):
                with step.item({"knvb_id": f"K{i}"}):
                    step.updated()

    gc.disable()  # only reference counting: a cycle would keep the run's processed items alive
    try:
        run_pipeline("freed")
        assert refs[0]() is None
    finally:
        gc.enable()
        unregister("freed")


def test_the_cancel_flag_that_items_read_follows_the_event():
    from runs.tracker import CancelEvent

    event = CancelEvent()
    assert (event.flag, event.is_set()) == (False, False)
    event.set()
    assert (event.flag, event.is_set()) == (True, True)
    event.clear()
    assert (event.flag, event.is_set()) == (False, False)
