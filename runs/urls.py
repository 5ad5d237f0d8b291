from django.urls import path

from runs import actions, views

app_name = "runs"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("runs/<int:pk>/", views.run_detail, name="detail"),
    path("runs/<int:pk>/cancel/", actions.cancel, name="cancel"),
    path("pipelines/<str:name>/run/", actions.run_now, name="run-now"),
]
