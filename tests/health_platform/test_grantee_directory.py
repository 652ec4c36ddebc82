"""The grantee directory's status on the ledger, its mirror, and the gate refusing a deactivated grantee."""

import pytest

from analytics.models import AnalysisStatus
from analytics.selectors import analysis_results
from analytics.services import analysis_request_create
from health_platform import bootstrap
from health_platform.errors import PermissionDenied, ValidationFailed
from health_platform.models import GranteeStatus
from health_platform.selectors import grantee_get, grantees_all
from health_platform.services import grantee_mirror_rebuild, grantee_set_active
from ledger.contracts import Contracts
from tests.conftest import analysis_held, consent_terms
from tests.signing import grant_signed


def _access_log(ledger, request_id):
    """The decisions the ledger's access log holds for the analysis's records (through the typed facade)."""
    events = Contracts(ledger).query_access_events(limit=1000, request_id=str(request_id)).events
    return sorted((e["decision"], e["reason"]) for e in events if e["kind"] == "record_access")


@pytest.mark.django_db
def test_every_grantee_the_directory_creates_is_registered_on_the_ledger_and_mirrored(clinician):
    profile = clinician.clinician_profile
    for grantee_id in (profile.grantee_id, profile.organisation.grantee_id):
        on_ledger = bootstrap.contracts().read_grantee(grantee_id)
        assert on_ledger is not None
        assert on_ledger.active
        mirrored = GranteeStatus.objects.get(grantee_id=grantee_id)
        assert (mirrored.active, mirrored.tx_id) == (True, on_ledger.tx_id)


@pytest.mark.django_db
def test_a_deactivated_grantee_is_left_out_of_the_choices_and_refused_for_new_consents(clinician, cohort):
    ((user, patient, _),) = cohort(1)
    grantee_id = clinician.clinician_profile.grantee_id
    grantee_set_active(grantee_id=grantee_id, active=False)
    assert grantee_id not in {g.grantee_id for g in grantees_all()}
    assert grantee_get(grantee_id=grantee_id).active is False
    with pytest.raises(ValidationFailed) as refused:
        grant_signed(actor=user, patient=patient, **consent_terms(clinician))
    assert refused.value.code == "grantee_inactive"


@pytest.mark.django_db
def test_the_mirror_is_rebuilt_from_the_ledger_alone_and_registers_grantees_the_ledger_missed(clinician):
    grantee_id = clinician.clinician_profile.grantee_id
    grantee_set_active(grantee_id=grantee_id, active=False)
    GranteeStatus.objects.all().delete()
    assert grantee_mirror_rebuild() == 2
    assert GranteeStatus.objects.get(grantee_id=grantee_id).active is False

    from health_platform.models import Organisation

    legacy = Organisation.objects.create(slug="legacy", name="Legacy")  # created before the ledger knew grantees
    assert bootstrap.contracts().read_grantee(legacy.grantee_id) is None
    assert grantee_mirror_rebuild(register_missing=True) == 3
    assert bootstrap.contracts().read_grantee(legacy.grantee_id).active


@pytest.mark.he
@pytest.mark.django_db(transaction=True)
def test_deactivating_a_clinician_refuses_their_consents_at_the_next_analysis_with_grantee_inactive_in_the_log(
    consented, clinician, models_registered, ledger, blob_dir, eager
):
    consented(2)
    before = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    before.refresh_from_db()
    assert analysis_results(request=before, viewer=clinician).refusals == {}

    # Requested while active, started after the deactivation: the gate, at the moment of use, refuses.
    after, start = analysis_held(clinician)
    grantee_set_active(grantee_id=clinician.clinician_profile.grantee_id, active=False)
    start()
    after.refresh_from_db()
    assert (after.status, after.total_records) == (AnalysisStatus.COMPLETED, 2)
    results = analysis_results(request=after, viewer=clinician)
    assert (results.rows, results.refusals) == ([], {"grantee_inactive": 2})
    assert _access_log(ledger, before.id) == [("admit", None), ("admit", None)]
    assert _access_log(ledger, after.id) == [("refuse", "grantee_inactive"), ("refuse", "grantee_inactive")]
    # A new request of theirs is refused up front, with the same reason: nothing would be admitted.
    with pytest.raises(PermissionDenied) as refused:
        analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    assert refused.value.code == "grantee_inactive"

    grantee_set_active(grantee_id=clinician.clinician_profile.grantee_id, active=True)
    again = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    again.refresh_from_db()
    assert _access_log(ledger, again.id) == [("admit", None), ("admit", None)]


@pytest.mark.django_db
def test_a_deactivated_clinician_is_told_at_once_in_the_api_and_the_portal_and_nothing_is_queued(
    clinician, models_registered
):
    from analytics.models import AnalysisRequest
    from tests.clients import api_as, signed_in

    grantee_set_active(grantee_id=clinician.clinician_profile.grantee_id, active=False)
    api = api_as(clinician).post(
        "/api/analyses/", {"model": "breast-cancer", "cohort": {"kind": "consented"}}, format="json"
    )
    portal = signed_in(clinician).post("/analytics/new/", {"model": "breast-cancer", "cohort_kind": "consented"})

    assert (api.status_code, api.json()["code"]) == (403, "grantee_inactive")
    assert portal.status_code == 403
    assert "deactivated" in portal.content.decode()
    assert not AnalysisRequest.objects.exists()
