"""The runs app's models, by role; every model and choice is importable from runs.models.

    run         run history: Run -> RunStep -> RunError, their statuses and modes
    records     record history: RecordChange, RecordProblem
    operations  ApiToken, AlertState / AlertEvent / Notification, PipelineSettings
"""

from runs.models.operations import AlertEvent, AlertState, ApiToken, Notification, PipelineSettings
from runs.models.records import ChangeAction, RecordChange, RecordProblem
from runs.models.run import HELD_REMOVALS_KEY, Mode, Run, RunError, RunQuerySet, RunStatus, RunStep, StepStatus

__all__ = [
    "HELD_REMOVALS_KEY", "AlertEvent", "AlertState", "ApiToken", "ChangeAction", "Mode", "Notification",
    "PipelineSettings", "RecordChange", "RecordProblem", "Run", "RunError", "RunQuerySet", "RunStatus", "RunStep",
    "StepStatus",
]
