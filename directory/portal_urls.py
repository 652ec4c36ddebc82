from django.urls import path

from directory import views

app_name = "directory"

urlpatterns = [
    path("", views.home, name="home"),
    path("organisations/", views.organisation_add, name="organisation-add"),
    path("clinicians/", views.clinician_add, name="clinician-add"),
    path("grantees/<str:grantee_id>/deactivate/", views.deactivate, name="deactivate"),
    path("grantees/<str:grantee_id>/reactivate/", views.reactivate, name="reactivate"),
    path("invitations/", views.invitations, name="invitations"),
    path("invitations/<str:invitation_id>/revoke/", views.invitation_revoke, name="invitation-revoke"),
    path("invitations/<str:invitation_id>/reissue/", views.invitation_reissue, name="invitation-reissue"),
]
