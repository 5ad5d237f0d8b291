from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path

from runs import api, health

admin.site.site_header = "syncsite"
admin.site.site_title = "syncsite"
admin.site.index_title = "Sync runs and club registry"

api_patterns = [
    path("pipelines/", api.pipelines, name="pipelines"),
    path("pipelines/<str:name>/run/", api.trigger, name="trigger"),
    path("runs/", api.runs, name="runs"),
    path("runs/<int:pk>/", api.run_detail, name="run"),
    path("runs/<int:pk>/errors/", api.run_errors, name="run-errors"),
    path("problems/", api.problems, name="problems"),
    path("openapi.yaml", api.openapi, name="openapi"),
    # Last: any other path under /api/ is a JSON 404, not Django's HTML page.
    re_path(r"^(?P<path>.*)$", api.not_found, name="not-found"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    # No login: for uptime monitors (tiny JSON, names and states only).
    path("health/", health.health, name="health"),
    path("health/pipelines/", health.health_pipelines, name="health-pipelines"),
    path("api/", include((api_patterns, "api"))),
    # The corrections worklist (the club app's own pages).
    path("", include("pipelines.urls")),
    path("", include("runs.urls")),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
