"""`all`: the six club pipelines as child runs of one parent run."""

from __future__ import annotations

from pipelines.web.source import share_session
from runs.pipeline import PipelineRun, UnknownPipeline, get_pipeline, register

CHILDREN = ("people", "nikki", "teams", "functions", "discipline", "freescout")


@register("all")
def run_all(run: PipelineRun) -> None:
    """people, nikki, teams, functions, discipline and freescout, in order; ends with the worst status."""
    # One browser and one login for all children (when a source is the web).
    share_session(run)
    for name in CHILDREN:
        try:
            get_pipeline(name)
        except UnknownPipeline:
            run.skip_step(name, f"the {name} pipeline is not installed")
            continue
        # A failing child does not stop the others; the runner computes the
        # parent's status from the children's (the worst wins).
        run.run_child(name)
