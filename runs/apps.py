from importlib import import_module

from django.apps import AppConfig
from django.conf import settings


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Sync runs"

    def ready(self) -> None:
        # Pipelines register themselves when their modules are imported; the
        # club's come from the `pipelines` app, extra ones (tests) from settings.
        for module in settings.RUNS_EXTRA_PIPELINE_MODULES:
            import_module(module)
