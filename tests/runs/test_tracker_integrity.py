"""Counter integrity: the stored counts equal the items processed, always.

The pipeline thread increments in-memory counters; the writer thread flushes
them about once a second and `end_run` drains the rest. These tests push
over a million items through real runs while the writer is woken at random
moments (mid-step, between increments), with random flush intervals, errors
interleaved (their batches wake the writer too), and `end_run` called
straight after the last increment, sometimes with a step still running.
"""

import random

import pytest

from runs.models import Run, RunError, RunStep
from runs.pipeline import register, unregister
from runs.runner import run_pipeline
from runs.tracker import RunTracker

pytestmark = pytest.mark.django_db(transaction=True)

KINDS = ("created", "updated", "skipped")


def plan(rng: random.Random, items: int, steps: int) -> list[list[tuple[str, int]]]:
    """Per step, (kind, n) increments: mostly single items, some bulk counts."""
    per_step = [items // steps] * steps
    per_step[-1] += items - sum(per_step)
    result = []
    for size in per_step:
        ops, left = [], size
        while left:
            n = 1 if rng.random() < 0.97 else min(left, rng.randint(2, 500))
            ops.append((rng.choice(KINDS), n))
            left -= n
        result.append(ops)
    return result


ITEMS = 1_050_000


@pytest.mark.parametrize("seed", [11])
def test_a_million_items_through_the_runner_are_all_counted(seed, settings):
    rng = random.Random(seed)
    settings.RUNS_FLUSH_INTERVAL_S = rng.choice([0.001, 0.005])
    steps = plan(rng, ITEMS, 4)
    wake_at = {rng.randrange(len(ops)) for ops in steps for _ in range(200)}
    fail_at = {rng.randrange(ITEMS) for _ in range(2_000)}
    expected = {"created": 0, "updated": 0, "skipped": 0, "failed": 0}
    per_step: list[dict] = []

    @register("stress")
    def stress(run):
        seen = 0
        for position, ops in enumerate(steps, start=1):
            counts = dict.fromkeys((*KINDS, "failed"), 0)
            with run.step(f"stress-{position}", total=sum(n for _k, n in ops)) as step:
                wake = run.tracker._wake
                for i, (kind, n) in enumerate(ops):
                    if i in wake_at:
                        wake.set()  # the writer flushes now, in the middle of the loop
                    if seen in fail_at and n == 1:
                        with step.item({"knvb_id": f"X{seen}"}):
                            raise ValueError("bad row")
                        counts["failed"] += 1
                    elif kind == "created":
                        step.created(n)
                        counts[kind] += n
                    elif kind == "updated":
                        step.updated(n)
                        counts[kind] += n
                    else:
                        step.skipped(n)
                        counts[kind] += n
                    seen += n
            per_step.append(counts)
            for key, value in counts.items():
                expected[key] += value

    try:
        outcome = run_pipeline("stress")
    finally:
        unregister("stress")
    run = Run.objects.get(pk=outcome.pk)
    assert sum(expected.values()) == ITEMS
    assert {k: getattr(run, k) for k in expected} == expected
    assert run.error_count == expected["failed"] == RunError.objects.filter(run=run).count()
    stored = [{k: getattr(s, k) for k in ("created", "updated", "skipped", "failed")}
              for s in RunStep.objects.filter(run=run).order_by("position")]
    assert stored == per_step
    # The runner's answer is the stored row: nothing read before the final write committed.
    assert (outcome.created, outcome.updated, outcome.skipped) == (run.created, run.updated, run.skipped)


@pytest.mark.parametrize("seed", [3, 5, 8])
def test_end_run_at_a_random_moment_keeps_every_count(seed):
    """end_run straight after the last increment, the last step still running."""
    rng = random.Random(seed)
    tracker = RunTracker("stress-direct", flush_interval=rng.choice([0.0005, 0.002, 0.02]))
    assert tracker.start_run() is not None
    total = 0
    wake = tracker._wake
    for position in range(1, 4):
        sid = tracker.start_step(f"s{position}")
        state = tracker.steps[sid]
        n = rng.randint(50_000, 150_000)
        wakes = {rng.randrange(n) for _ in range(100)}
        for i in range(n):
            state.created += 1
            if i in wakes:
                wake.set()
        total += n
        if position < 3:
            tracker.end_step(sid, status="success")
    # No pause: the writer may be in the middle of a flush right now.
    tracker.end_run()
    run = Run.objects.get(pk=tracker.run_id)
    assert run.created == total
    assert sum(RunStep.objects.filter(run=run).values_list("created", flat=True)) == total
    assert RunStep.objects.get(run=run, position=3).status == "cancelled"  # ended while running
    assert tracker.final_written
