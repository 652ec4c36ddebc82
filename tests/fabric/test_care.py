"""Reads for treatment on the real Fabric network: the gate answers from the chain at the moment of the read, and
every read (admitted with its consent, refused with its reason) is one committed access-log transaction endorsed by
both organisations."""

import pytest

from audit.models import AccessEvent
from care.services import treatment_records_read
from consent.services import consent_revoke
from tests.conftest import grant
from tests.fabric.blocks import endorsing_peers, organisation_authorities

pytestmark = [pytest.mark.fabric, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TREATMENT = {"purposes": ["treatment"], "categories": ["imaging"]}


def test_treatment_reads_on_fabric_are_gated_and_logged_on_the_chain(cohort, clinician, ledger, fabric_network):
    assert type(ledger).__name__ == "FabricLedger"
    (u0, p0, r0), (u1, p1, r1), (u2, p2, r2) = cohort(3)
    consent = grant(u0, p0, clinician, **TREATMENT)
    grant(u1, p1, clinician)  # an analysis's consent: no treatment
    consent_revoke(actor=u2, consent=grant(u2, p2, clinician, **TREATMENT))
    first_block = ledger.height()

    reads = [
        treatment_records_read(clinician=clinician, patient_pseudonym=p.pseudonym, category="imaging")
        for p in (p0, p1, p2)
    ]

    answers = [(r.records[0].record_id, r.records[0].decision, r.records[0].reason) for r in reads]
    assert answers == [
        (str(r0.pk), "admit", None),
        (str(r1.pk), "refuse", "no_consent"),
        (str(r2.pk), "refuse", "consent_revoked"),
    ]
    assert reads[0].records[0].observations
    assert [r.records[0].observations for r in reads[1:]] == [None, None]
    for read in reads:
        location = ledger.locate(read.tx_id)
        assert location is not None
        assert location.status == "VALID"
        mirrored = AccessEvent.objects.get(batch_id=f"read:{read.read_id}")
        assert (mirrored.kind, mirrored.tx_id, mirrored.block_number) == (
            "record_read",
            read.tx_id,
            location.block_number,
        )
    assert AccessEvent.objects.get(batch_id=f"read:{reads[0].read_id}").consent_id == consent.consent_id

    authorities = organisation_authorities(fabric_network.directory / "crypto")
    endorsed: dict[str, list[str]] = {}
    for number in range(first_block, ledger.height()):
        endorsed.update(endorsing_peers(ledger._block(number), ledger.chaincode, authorities))
    for read in reads:
        assert tuple(sorted(endorsed[read.tx_id])) == ("HospitalMSP", "ResearchMSP")
    assert ledger.verify().ok
