"""The corrections worklist: what a volunteer enters in Sportlink (pipelines.corrections).

Staff only, plus `pipelines.view_correction`; deciding a conflict is a POST
(with the CSRF token) that needs `pipelines.change_correction`.
"""

from __future__ import annotations

import csv
from itertools import groupby

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from pipelines import corrections
from pipelines.models import Correction, Member, Parent
from runs.views import csv_cell

# The worklist shows this many open corrections; the CSV export has them all.
WORKLIST_LIMIT = 1000

EXPORT_COLUMNS = ["relatiecode", "name", "field", "in_sportlink", "enter", "state", "detected_at", "detected_by"]


def member_url(member: Member) -> str:
    """The page to open for a member: its record page, or its admin page where there is none."""
    try:
        return reverse("runs:record", kwargs={"identifier": member.knvb_id})
    except NoReverseMatch:
        return reverse("admin:pipelines_member_change", args=[member.pk])


def parent_url(parent: Parent) -> str:
    """The page to open for a parent: its admin page (parents have no record page)."""
    return reverse("admin:pipelines_parent_change", args=[parent.pk])


def _owner(correction: Correction) -> tuple[str, int | None]:
    return ("member", correction.member_id) if correction.member_id else ("parent", correction.parent_id)


def _children(parent: Parent) -> list[Member]:
    return list(parent.children.all())  # prefetched by corrections.open_corrections


def _require(request, perm: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied


@staff_member_required
def worklist(request):
    _require(request, "pipelines.view_correction")
    rows = list(corrections.open_corrections()[:WORKLIST_LIMIT + 1])
    groups = []
    for (kind, _pk), owned in groupby(rows[:WORKLIST_LIMIT], key=_owner):
        items = list(owned)
        if kind == "member":
            member = items[0].member
            groups.append({"member": member, "url": member_url(member), "items": items})
        else:
            parent = items[0].parent
            groups.append({"parent": parent, "url": parent_url(parent), "items": items,
                           "children": _children(parent)})
    return render(request, "pipelines/corrections.html", {
        "groups": groups,
        "more": len(rows) > WORKLIST_LIMIT,
        "limit": WORKLIST_LIMIT,
        "can_decide": request.user.has_perm("pipelines.change_correction"),
        "nav": "corrections",
    })


class _Echo:
    def write(self, value):
        return value


@staff_member_required
def worklist_export(request):
    """Every open correction as CSV, streamed; cells that look like formulas are quoted (runs.views.csv_cell).

    A parent's line has its children's relatiecodes (space-separated): Sportlink
    keeps the parent on each child's row, so that is where the volunteer enters it.
    """
    _require(request, "pipelines.view_correction")
    rows = corrections.open_corrections().iterator(chunk_size=2000)
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(EXPORT_COLUMNS)
        for c in rows:
            if c.member_id:
                code, name = c.member.knvb_id, c.member.full_name
            else:  # a parent is entered on the rows of its children
                code = " ".join(child.knvb_id for child in _children(c.parent))
                name = f"parent {c.parent.name or c.parent.sportlink_email} (on the children's rows)"
            yield writer.writerow([csv_cell(v) for v in (
                code, name, c.label, c.sportlink_value, c.our_value, c.state,
                timezone.localtime(c.detected_at).isoformat(), c.detected_by.get_username() if c.detected_by else "",
            )])

    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="corrections-{stamp}.csv"'
    return response


@require_POST
@staff_member_required
def decide(request, pk: int):
    """"Keep ours" or "take Sportlink's" for one correction."""
    _require(request, "pipelines.change_correction")
    decision = request.POST.get("decision")
    if decision == "keep":
        done = corrections.keep_ours([pk], user=request.user)
        text = "Kept our value; it is back on the list to enter in Sportlink."
    elif decision == "take":
        done = corrections.take_sportlink([pk], user=request.user)
        text = "The registry now has Sportlink's value; the correction is closed."
    else:
        messages.error(request, "Choose “keep ours” or “take Sportlink's”.")
        return redirect("pipelines:corrections")
    if done:
        messages.success(request, text)
    else:
        messages.warning(request, "Nothing changed: that correction is no longer open (someone decided already, "
                                  "or the last run confirmed it).")
    return redirect("pipelines:corrections")
