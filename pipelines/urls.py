from django.urls import path

from pipelines import views

app_name = "pipelines"

urlpatterns = [
    path("corrections/", views.worklist, name="corrections"),
    path("corrections/export.csv", views.worklist_export, name="corrections-export"),
    path("corrections/<int:pk>/decide/", views.decide, name="corrections-decide"),
]
