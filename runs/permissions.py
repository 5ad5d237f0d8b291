"""Who may see what on the dashboard: Django's model permissions, as in the admin.

Staff status only lets someone log in. Runs, steps, the overview and the CSV
export need `runs.view_run`; errors and tracebacks (names, emails of members)
need `runs.view_runerror`. A staff account without them gets 403.
"""

from __future__ import annotations

from functools import wraps

from django.apps import apps
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied

VIEW_RUNS = "runs.view_run"
VIEW_ERRORS = "runs.view_runerror"

#: What a volunteer who looks after the syncs needs (the "Volunteers" group).
VOLUNTEER_PERMISSIONS = (
    VIEW_RUNS, "runs.view_runstep", VIEW_ERRORS, "runs.trigger_run", "runs.cancel_run",
)
VOLUNTEERS_GROUP = "Volunteers"


def staff_permission_required(*perms: str):
    """A staff login (else the admin login page) plus every one of `perms` (else 403)."""

    def decorator(view):
        @wraps(view)
        def checked(request, *args, **kwargs):
            if not request.user.has_perms(perms):
                raise PermissionDenied("You need the permission to view this page; ask an administrator.")
            return view(request, *args, **kwargs)

        return staff_member_required(checked)

    return decorator


def volunteer_permissions():
    """The Permission rows of the Volunteers group: VOLUNTEER_PERMISSIONS plus
    view permission on every model of an app that says `volunteers_view = True`
    (the club registry), without runs knowing those apps."""
    from django.contrib.auth.models import Permission
    from django.db.models import Q

    query = Q()
    for perm in VOLUNTEER_PERMISSIONS:
        app_label, codename = perm.split(".")
        query |= Q(content_type__app_label=app_label, codename=codename)
    for config in apps.get_app_configs():
        if getattr(config, "volunteers_view", False):
            query |= Q(content_type__app_label=config.label, codename__startswith="view_")
    return Permission.objects.filter(query)


def ensure_volunteers_group():
    """Create the Volunteers group, or give it back exactly the right permissions."""
    from django.contrib.auth.models import Group

    group, _ = Group.objects.get_or_create(name=VOLUNTEERS_GROUP)
    group.permissions.set(volunteer_permissions())
    return group
