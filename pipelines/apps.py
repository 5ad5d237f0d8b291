from importlib import import_module

from django.apps import AppConfig

# The club's pipelines, in the order `runsync --list` and the overview show them.
# (pipelines.laposta is a destination used by `people`, not a pipeline of its own.)
PIPELINE_MODULES = (
    "pipelines.people",
    "pipelines.nikki",
    "pipelines.teams",
    "pipelines.functions",
    "pipelines.discipline",
    "pipelines.freescout",
    "pipelines.all",
)


class PipelinesConfig(AppConfig):
    name = "pipelines"
    verbose_name = "Club registry"
    # The Volunteers group (runs.permissions) may view every registry model.
    volunteers_view = True

    def ready(self) -> None:
        # Pipelines register themselves (runs.pipeline.register) when imported.
        for module in PIPELINE_MODULES:
            import_module(module)
        # The record page's registry panel (runs.records).
        import_module("pipelines.record_panel")
