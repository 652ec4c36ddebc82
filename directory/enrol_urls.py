from django.urls import path

from directory import views

app_name = "enrol"

urlpatterns = [
    path("", views.enrol_start, name="start"),
    path("link/<str:token>/", views.enrol_link, name="link"),
    path("staff/<str:uidb64>/<str:token>/", views.enrol_staff, name="staff"),
]
