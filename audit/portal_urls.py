from django.urls import path

from audit import overview_views, views

app_name = "audit"

urlpatterns = [
    path("", views.search, name="search"),
    path("exports/", views.exports, name="exports"),
    path("exports/<str:export_id>/row/", views.export_row, name="export-row"),
    path("exports/<str:export_id>/download/", views.export_download, name="export-download"),
    path("exports/<str:export_id>/manifest/", views.export_manifest, name="export-manifest"),
    path("ledger/", views.ledger, name="ledger"),
    path("my-data/", views.my_data, name="my-data"),
    # The auditor's home (issue 14): the state of the log, and verify a copy.
    path("overview/", overview_views.overview, name="overview"),
    path("verify/", overview_views.verify_copy, name="verify"),
]
