from django.urls import path

from runs import action_views, views

app_name = "runs"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("runs/<int:pk>/", views.run_detail, name="detail"),
    path("runs/<int:pk>/cancel/", action_views.cancel, name="cancel"),
    path("runs/<int:pk>/approve-removals/", action_views.approve_removals, name="approve-removals"),
    path("pipelines/<str:name>/run/", action_views.run_now, name="run-now"),
    path("runs/", views.RunListView.as_view(), name="list"),
    path("runs/export.csv", views.run_export, name="export"),
    path("runs/<int:pk>/progress/", views.run_progress, name="progress"),
    path("errors/", views.ErrorListView.as_view(), name="errors"),
    path("pipelines/<str:name>/", views.pipeline_detail, name="pipeline"),
    # Record history: open problems, one record's story, a sync of some records.
    path("problems/", views.ProblemListView.as_view(), name="problems"),
    path("records/<path:identifier>/", views.record_detail, name="record"),
    path("pipelines/<str:name>/sync-records/", action_views.sync_records, name="sync-records"),
]
