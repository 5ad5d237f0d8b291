from importlib import import_module
from importlib.util import find_spec

from django.apps import AppConfig

# The club's pipelines, in the order `runsync --list` and the overview show them.
PIPELINE_MODULES = (
    "pipelines.people",
    "pipelines.nikki",
    "pipelines.teams",
    "pipelines.functions",
    "pipelines.discipline",
    "pipelines.freescout",
    "pipelines.all",
    "pipelines.laposta",
)
# Destination modules that may be absent while they are being developed.
OPTIONAL_MODULES = {"pipelines.laposta", "pipelines.freescout"}
# While the pipeline modules land one by one, import only those present.
_TRANSITIONAL = False


class PipelinesConfig(AppConfig):
    name = "pipelines"
    verbose_name = "Club registry"

    def ready(self) -> None:
        # Pipelines register themselves (runs.pipeline.register) when imported.
        for module in PIPELINE_MODULES:
            if (module in OPTIONAL_MODULES or _TRANSITIONAL) and find_spec(module) is None:
                continue
            import_module(module)
