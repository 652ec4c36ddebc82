from django.urls import path

from analytics import views

app_name = "analytics"

urlpatterns = [
    path("", views.analysis_list, name="list"),
    path("new/", views.analysis_new, name="new"),
    path("models/<str:name>/", views.model_card, name="model-card"),
    path("<str:analysis_id>/", views.analysis_detail, name="detail"),
    path("<str:analysis_id>/progress/", views.analysis_progress_panel, name="progress"),
    path("<str:analysis_id>/results/", views.analysis_results_panel, name="results"),
    path("<str:analysis_id>/cancel/", views.analysis_cancel, name="cancel"),
]
