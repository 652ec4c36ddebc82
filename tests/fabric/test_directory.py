"""The grantee directory on the real Fabric network: a clinician deactivated on the chain is refused at the next
analysis with grantee_inactive, in the access log as the chain holds it, and admitted again once reactivated."""

import pytest

from analytics.models import AnalysisStatus
from analytics.selectors import analysis_results
from analytics.services import analysis_request_create
from health_platform import bootstrap
from health_platform.services import grantee_set_active
from ledger.contracts import Contracts
from tests.conftest import analysis_held

pytestmark = [pytest.mark.fabric, pytest.mark.he, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _access_log(ledger, request_id):
    """The decisions the ledger's access log holds for the analysis's records (through the typed facade)."""
    events = Contracts(ledger).query_access_events(limit=1000, request_id=str(request_id)).events
    return sorted((e["decision"], e["reason"]) for e in events if e["kind"] == "record_access")


def _analysis(clinician):
    request = analysis_request_create(requester=clinician, model_name="breast-cancer", cohort_kind="consented")
    request.refresh_from_db()
    assert (request.status, request.total_records) == (AnalysisStatus.COMPLETED, 2)
    return request


def test_a_clinician_deactivated_on_fabric_is_refused_grantee_inactive_at_the_next_analysis(
    consented, clinician, models_registered, ledger, blob_dir, eager
):
    assert type(ledger).__name__ == "FabricLedger"
    consented(2)
    grantee_id = clinician.clinician_profile.grantee_id
    assert bootstrap.contracts().read_grantee(grantee_id).active  # registered on the chain by clinician_register

    admitted = _analysis(clinician)
    assert _access_log(ledger, admitted.id) == [("admit", None), ("admit", None)]

    # Requested while active, started after the deactivation: the gate reads the chain at the moment of use.
    refused, start = analysis_held(clinician)
    deactivated = grantee_set_active(grantee_id=grantee_id, active=False)
    assert ledger.locate(deactivated.tx_id).status == "VALID"
    start()
    refused.refresh_from_db()
    assert (refused.status, refused.total_records) == (AnalysisStatus.COMPLETED, 2)
    assert analysis_results(request=refused, viewer=clinician).refusals == {"grantee_inactive": 2}
    assert _access_log(ledger, refused.id) == [("refuse", "grantee_inactive"), ("refuse", "grantee_inactive")]

    grantee_set_active(grantee_id=grantee_id, active=True)
    assert _access_log(ledger, _analysis(clinician).id) == [("admit", None), ("admit", None)]
    history = bootstrap.contracts().grantee_history(grantee_id)
    assert [change.value["status"] for change in history if change.value] == ["active", "inactive", "active"]
