from django.urls import path

from records import ingest_views, views

app_name = "records"

urlpatterns = [
    path("", views.my_records, name="my-records"),
    path("<uuid:record_id>/", views.my_record_detail, name="record-detail"),
    # The custodian's portal (issue 14): upload with its report, and the ingest history.
    path("ingest/", ingest_views.ingest, name="ingest"),
    path("ingest/history/", ingest_views.ingest_history, name="ingest-history"),
]
