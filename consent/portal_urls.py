from django.urls import path

from consent import views

app_name = "consent"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("grant/", views.grant, name="grant"),
    path("granted-to-me/", views.granted_to_me, name="granted-to-me"),
    path("<str:consent_id>/", views.detail, name="detail"),
    path("<str:consent_id>/revoke/", views.revoke, name="revoke"),
]
