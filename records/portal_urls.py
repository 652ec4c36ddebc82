from django.urls import path

from records import views

app_name = "records"

urlpatterns = [
    path("", views.my_records, name="my-records"),
    path("<uuid:record_id>/", views.my_record_detail, name="record-detail"),
]
