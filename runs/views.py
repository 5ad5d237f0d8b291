from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import get_object_or_404, render

from runs.models import Run
from runs.pipeline import all_pipelines
from runs.services import latest_runs


@staff_member_required
def overview(request):
    pipelines = all_pipelines()
    last = latest_runs([p.name for p in pipelines])
    cards = [{"pipeline": p, "run": last.get(p.name)} for p in pipelines]
    return render(request, "runs/overview.html", {"cards": cards})


@staff_member_required
def run_detail(request, pk):
    run = get_object_or_404(Run, pk=pk)
    return render(request, "runs/run_detail.html", {"run": run, "steps": run.steps.all()})
