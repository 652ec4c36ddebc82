"""Hostile-input fixtures: every role with an API token, and data present for each of them to reach
(records, consents granted and revoked, a completed analysis with its access events, an audit export).

The analysis runs for real (eager Celery, TenSEAL, the embedded ledger), so tests using `platform_data`
are transactional (`django_db(transaction=True)`), as the analytics tests are.
"""

from dataclasses import dataclass, field

import pytest
from rest_framework.authtoken.models import Token

from audit.models import AuditExport, ExportStatus
from audit.selectors import AccessEventFilters
from audit.services import audit_export_create
from consent.models import Consent
from health_platform.roles import Role
from tests.audit.conftest import audit_user, mixed_analysis  # noqa: F401  (fixtures shared with the audit tests)
from tests.records.factories import UserFactory

ROLES = ("patient", "clinician", "auditor", "custodian")


@pytest.fixture(autouse=True)
def sign_in_throttle_reset(settings):
    """These tests fail many sign-ins on purpose: forget them, before and after, so no other test is throttled."""
    from django.core.cache import caches

    name = getattr(settings, "LOGIN_THROTTLE_CACHE", None)
    if name:
        caches[name].clear()
    yield
    if name:
        caches[name].clear()


@dataclass
class PlatformData:
    """Users by role, their API tokens, and ids of objects that exist (owned by someone)."""

    users: dict[str, object]
    tokens: dict[str, str]
    record_ids: list[str] = field(default_factory=list)
    consent_ids: list[str] = field(default_factory=list)
    analysis_ids: list[str] = field(default_factory=list)
    export_ids: list[str] = field(default_factory=list)
    model_names: list[str] = field(default_factory=list)
    grantee_ids: list[str] = field(default_factory=list)
    invitation_ids: list[str] = field(default_factory=list)

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Token {self.tokens[role]}"}


@pytest.fixture
def platform_data(mixed_analysis, audit_user, export_dir, models_registered) -> PlatformData:  # noqa: F811
    """Four patients with records, consents (active, revoked, other category), a completed analysis and
    its access events, and a completed audit export: the data each role's endpoints answer about."""
    analysis, _expected, people = mixed_analysis
    custodian = UserFactory(username="custodian", roles=[Role.CUSTODIAN])
    export = audit_export_create(requester=audit_user, format="json", filters=AccessEventFilters())
    export.refresh_from_db()
    assert export.status == ExportStatus.COMPLETED, export.failure_code
    users = {
        "patient": people[0][0],
        "clinician": analysis.requester,
        "auditor": audit_user,
        "custodian": custodian,
    }
    tokens = {role: Token.objects.get_or_create(user=user)[0].key for role, user in users.items()}
    return PlatformData(
        users=users,
        tokens=tokens,
        record_ids=[str(record.pk) for _user, _patient, record in people],
        consent_ids=list(Consent.objects.values_list("consent_id", flat=True)),
        analysis_ids=[str(analysis.pk)],
        export_ids=[str(pk) for pk in AuditExport.objects.values_list("pk", flat=True)],
        model_names=sorted(models_registered),
        grantee_ids=[analysis.requester.clinician_profile.grantee_id],
        invitation_ids=[directory_invitation(people[0][1])],
    )


def directory_invitation(patient) -> str:
    """A pending invitation of `patient` (who has an account already: re-issuing it is refused, 409)."""
    import hashlib
    import os
    from datetime import timedelta

    from django.utils import timezone

    from directory.models import PatientInvitation

    invitation = PatientInvitation.objects.create(
        patient=patient,
        token_sha256=hashlib.sha256(os.urandom(16)).hexdigest(),
        by_email=False,
        expires_at=timezone.now() + timedelta(days=1),
    )
    return str(invitation.pk)
