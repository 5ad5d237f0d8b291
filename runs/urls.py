from django.urls import path

from runs import views

app_name = "runs"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("runs/<int:pk>/", views.run_detail, name="detail"),
]
