"""Read queries for the dashboard pages.

Every query here is bounded by an index and a LIMIT, so a page costs the same
with 2,000 or 2,000,000 rows of history: no COUNT(*) over a history table, no
LIKE '%…%' over all errors. The comments name the index each query uses.

A leaf module: it imports only the models, so anything (scheduling, the
pipeline states, views, the API) may import it without an import circle.
"""

from __future__ import annotations

from django.db import connection
from django.db.models import Count, Max, Min, Q, QuerySet

from runs.models import RecordChange, RecordProblem, Run, RunError, RunStep

#: How many runs the pipeline page's chart draws.
CHART_WINDOW = 100
#: The grouped error view groups at most this many of the newest matching errors.
GROUP_WINDOW = 5000
#: An identifier prefix shorter than this is not searched (it would match everyone).
MIN_PREFIX = 2

# Columns a card, a chart or a table row needs; the raw UNION below selects these.
_RUN_COLUMNS = (
    "id", "pipeline", "parent_id", "mode", "status", "started_at", "finished_at", "duration_ms",
    "created", "updated", "skipped", "failed", "error_count", "message", "heartbeat_at",
    # Tells a not-configured skip from a skip because the pipeline was running (held_by).
    "summary",
)


def recent_runs_per_pipeline(names: list[str], limit: int, *,
                             exclude_statuses: tuple[str, ...] = ()) -> dict[str, list[Run]]:
    """The newest `limit` runs of each pipeline (without `exclude_statuses`), in one query.

    A UNION ALL of one `ORDER BY started_at DESC LIMIT n` per pipeline: each arm
    is a range scan of run_pipeline_started, so the cost depends on the number
    of pipelines and `limit`, never on the size of the history.
    """
    result: dict[str, list[Run]] = {name: [] for name in names}
    if not names:
        return result
    table = connection.ops.quote_name(Run._meta.db_table)
    cols = ", ".join(connection.ops.quote_name(c) for c in _RUN_COLUMNS)
    excluded = f" AND status NOT IN ({', '.join(['%s'] * len(exclude_statuses))})" if exclude_statuses else ""
    arm = (f"SELECT * FROM (SELECT {cols} FROM {table} WHERE pipeline = %s{excluded} "  # noqa: S608
           f"ORDER BY started_at DESC, id DESC LIMIT {int(limit)}) AS t{{i}}")
    sql = " UNION ALL ".join(arm.format(i=i) for i in range(len(names)))
    params = [value for name in names for value in (name, *map(str, exclude_statuses))]
    for run in Run.objects.raw(sql, params):  # only quoted names and placeholders
        result[run.pipeline].append(run)
    for runs in result.values():
        runs.sort(key=lambda r: (r.started_at, r.pk), reverse=True)
    return result


def latest_runs(names: list[str]) -> dict[str, Run]:
    """The newest run of each pipeline, with every field: two queries whatever
    the number of pipelines (the UNION above, then the rows by primary key)."""
    ids = [runs[0].pk for runs in recent_runs_per_pipeline(list(names), 1).values() if runs]
    return {run.pipeline: run for run in Run.objects.filter(pk__in=ids)}


def pipeline_chart_runs(name: str) -> list[Run]:
    """The last CHART_WINDOW runs of one pipeline, oldest first (run_pipeline_started)."""
    runs = recent_runs_per_pipeline([name], CHART_WINDOW)[name]
    runs.reverse()
    return runs


def runs_queryset() -> QuerySet[Run]:
    """The runs list's base query: newest first, no joins (run_started)."""
    return Run.objects.all().order_by("-started_at", "-id")


def run_detail(pk: int) -> Run:
    return Run.objects.select_related("triggered_by", "cancel_requested_by", "parent",
                                      "removals_approved_by").get(pk=pk)


def run_steps(run: Run) -> list[RunStep]:
    return list(run.steps.order_by("position"))


def child_runs(run: Run, limit: int = 100) -> list[Run]:
    # Ordered by id (= start order) so the parent_id index answers it: ordering
    # by started_at makes SQLite walk run_started over the whole table instead.
    return list(Run.objects.filter(parent_id=run.pk).order_by("id")[:limit])


def run_errors(run: Run, *, step_id: int | None = None, q: str = "",
               children: list[Run] | None = None) -> QuerySet[RunError]:
    """A run's errors in step order, then as they happened.

    Ordered by (step, id) so SQLite walks runerror_run_step (which carries the
    rowid) without sorting, even for a run with 50,000 errors. The search is an
    identifier prefix or a message substring; both stay inside this one run.

    A parent run (`all`) has its children's errors too (its error count is
    their sum): one runerror_run_step range per run, in run order. Its steps
    stand for child runs, so filtering by such a step shows that child's errors.
    """
    ids = [run.pk] + [c.pk for c in children or []]
    child_of_step = {}
    if children:
        child_of_step = {s.pk: s.detail.get("child_run") for s in run.steps.all() if s.detail.get("child_run")} \
            if step_id is not None else {}
    if len(ids) == 1:
        qs = RunError.objects.filter(run_id=run.pk)
    elif step_id is not None and child_of_step.get(step_id):
        qs, step_id = RunError.objects.filter(run_id=child_of_step[step_id]), None
    else:
        qs = RunError.objects.filter(run_id__in=ids)
    if step_id is not None:
        qs = qs.filter(step_id=step_id)
    if q:
        qs = qs.filter(Q(message__icontains=q) | identifier_prefix_q(q))
    return qs.order_by("run_id", "step_id", "id") if len(ids) > 1 else qs.order_by("step_id", "id")


def identifier_prefix_q(prefix: str):
    """identifier starts with `prefix`, written as a range on SQLite so it uses the index.

    SQLite only uses an index for LIKE with a NOCASE column; `>=`/`<` on its
    binary-collated B-tree is exact. PostgreSQL with a linguistic collation
    (en_US.UTF-8, C.UTF-8) does not sort U+10FFFF after every character, so
    the range would miss rows there: use LIKE 'prefix%' (startswith).
    """
    if connection.vendor != "sqlite":
        return Q(identifier__startswith=prefix)
    return Q(identifier__gte=prefix, identifier__lt=prefix + "\U0010ffff")


def errors_of_pipeline(qs: QuerySet[RunError], pipeline: str) -> QuerySet[RunError]:
    """Errors of one pipeline's runs, newest first: a range of runerror_pipeline_created."""
    return qs.filter(pipeline=pipeline)


def errors_queryset() -> QuerySet[RunError]:
    """The error explorer's base query: newest first (runerror_created)."""
    return RunError.objects.select_related("run").defer("traceback", "run__summary").order_by("-created_at", "-id")


def grouped_errors(qs: QuerySet[RunError], *, bounded_by_identifier: bool, limit: int = 100) -> list[dict]:
    """Group errors by identifier + message: first seen, last seen, count, runs.

    Bounded: for one member (an exact identifier) the group covers all of
    that member's errors (an index range); otherwise only the newest
    GROUP_WINDOW matching errors are grouped (an index walk with a LIMIT).
    """
    if not bounded_by_identifier:
        newest = qs.order_by("-created_at", "-id").values("id")[:GROUP_WINDOW]
        qs = RunError.objects.filter(id__in=newest)
    return list(
        qs.order_by()
        .values("identifier", "message")
        .annotate(count=Count("id"), runs=Count("run_id", distinct=True),
                  first_seen=Min("created_at"), last_seen=Max("created_at"))
        .order_by("-last_seen")[:limit]
    )


# --- record history: the record page and open problems ------------------------

#: How much of one record's history the record page shows (newest first).
RECORD_CHANGES_SHOWN = 100
RECORD_ERRORS_SHOWN = 50
RECORD_PROBLEMS_SHOWN = 50
#: Open problems counted per pipeline at most (the card says "1,000+").
OPEN_PROBLEMS_CAP = 1000


def record_changes(identifier: str, limit: int = RECORD_CHANGES_SHOWN) -> list[RecordChange]:
    """One identifier's newest changes: a range of recordchange_identifier (no sort)."""
    return list(RecordChange.objects.filter(identifier=identifier).order_by("-created_at", "-id")[:limit])


def record_errors(identifier: str, limit: int = RECORD_ERRORS_SHOWN) -> list[RunError]:
    """One identifier's newest errors: a range of runerror_identifier_created, no join
    (the error carries its pipeline; the run is linked by id)."""
    return list(RunError.objects.filter(identifier=identifier).order_by("-created_at", "-id")[:limit])


def record_problems(identifier: str, limit: int = RECORD_PROBLEMS_SHOWN) -> list[RecordProblem]:
    """One identifier's problems, open first, then the newest (recordproblem_identifier)."""
    problems = list(RecordProblem.objects.filter(identifier=identifier).order_by("-last_seen_at", "-id")[:limit])
    problems.sort(key=lambda p: p.resolved_at is not None)  # stable: open ones first, each newest first
    return problems


def problems_queryset(*, resolved: bool = False) -> QuerySet[RecordProblem]:
    """/problems/: open ones by last seen (recordproblem_open_seen), or resolved
    ones by when they were resolved (recordproblem_resolved), newest first."""
    if resolved:
        return RecordProblem.objects.filter(resolved_at__isnull=False).order_by("-resolved_at", "-id")
    return RecordProblem.objects.filter(resolved_at__isnull=True).order_by("-last_seen_at", "-id")


def open_problem_counts(names: list[str], cap: int = OPEN_PROBLEMS_CAP) -> dict[str, int]:
    """Open problems per pipeline, each counted up to `cap` (one capped
    subquery per pipeline over the recordproblem_open_pipeline partial index,
    in one UNION ALL): open problems are current state, not history, but a
    broken export could open one per member."""
    counts = {name: 0 for name in names}
    if not names:
        return counts
    table = connection.ops.quote_name(RecordProblem._meta.db_table)
    arm = (f"SELECT CAST(%s AS varchar(64)) AS pipeline, COUNT(*) AS n FROM (SELECT 1 FROM {table} "  # noqa: S608
           f"WHERE pipeline = %s AND resolved_at IS NULL LIMIT {int(cap)}) AS t{{i}}")
    sql = " UNION ALL ".join(arm.format(i=i) for i in range(len(names)))
    params = [value for name in names for value in (name, name)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for name, n in cursor.fetchall():
            counts[name] = n
    return counts


def pipeline_open_problems(name: str, limit: int = 20) -> list[RecordProblem]:
    """The pipeline page's newest open problems (recordproblem_open_pipeline)."""
    return list(RecordProblem.objects.filter(pipeline=name, resolved_at__isnull=True)
                .order_by("-last_seen_at", "-id")[:limit])
