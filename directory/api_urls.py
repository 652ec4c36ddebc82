from django.urls import path

from directory import api

urlpatterns = [
    path("grantees/", api.GranteeListView.as_view(), name="api-directory-grantees"),
    path("organisations/", api.OrganisationAddView.as_view(), name="api-directory-organisations"),
    path("clinicians/", api.ClinicianInviteView.as_view(), name="api-directory-clinicians"),
    path("model-stewards/", api.ModelStewardInviteView.as_view(), name="api-directory-model-stewards"),
    path(
        "grantees/<str:grantee_id>/deactivate/",
        api.GranteeStatusView.as_view(active=False),
        name="api-directory-grantee-deactivate",
    ),
    path(
        "grantees/<str:grantee_id>/reactivate/",
        api.GranteeStatusView.as_view(active=True),
        name="api-directory-grantee-reactivate",
    ),
    path(
        "grantees/<str:grantee_id>/second-factor-reset/",
        api.SecondFactorResetView.as_view(),
        name="api-directory-second-factor-reset",
    ),
    path("invitations/", api.InvitationListView.as_view(), name="api-directory-invitations"),
    path(
        "invitations/<str:invitation_id>/revoke/",
        api.InvitationRevokeView.as_view(),
        name="api-directory-invitation-revoke",
    ),
    path(
        "invitations/<str:invitation_id>/reissue/",
        api.InvitationReissueView.as_view(),
        name="api-directory-invitation-reissue",
    ),
]
