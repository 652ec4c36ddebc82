import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from consent.models import Consent
from tests.signing import grant_signed, revoke_signed

FIELDS = [f.attname for f in Consent._meta.fields]


def _snapshot():
    return sorted(tuple(row) for row in Consent.objects.order_by("consent_id").values_list(*FIELDS))


def test_dropping_the_mirror_and_rebuilding_restores_it_exactly(
    patient_user, other_patient_user, terms, organisation, capsys
):
    first = grant_signed(actor=patient_user, patient=patient_user.patient, **terms)
    grant_signed(actor=patient_user, patient=patient_user.patient, **{**terms, "grantee_id": organisation.grantee_id})
    revoke_signed(actor=patient_user, consent=first)
    grant_signed(actor=other_patient_user, patient=other_patient_user.patient, **terms)
    before = _snapshot()
    assert len(before) == 3

    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {Consent._meta.db_table}")
    assert Consent.objects.count() == 0

    call_command("rebuild_consent_mirror")

    assert _snapshot() == before
    assert "3 consents" in capsys.readouterr().out


def test_rebuild_replaces_a_tampered_mirror_row_with_the_ledger_truth(patient_user, terms):
    consent = grant_signed(actor=patient_user, patient=patient_user.patient, **terms)
    Consent.objects.filter(pk=consent.pk).update(categories=["imaging", "laboratory"], status="revoked")
    call_command("rebuild_consent_mirror")
    consent.refresh_from_db()
    assert (consent.categories, consent.status) == (["imaging"], "active")


@pytest.mark.parametrize("command", ["rebuild_consent_mirror", "rebuild_access_log_mirror", "register_models"])
def test_a_command_that_finds_the_ledger_down_says_so_with_its_code_and_changes_nothing(
    patient_user, terms, settings, command
):
    grant_signed(actor=patient_user, patient=patient_user.patient, **terms)
    before = _snapshot()
    settings.LEDGER_URL = "embedded:///proc/health-platform-no-such-dir/ledger.sqlite3"
    with pytest.raises(CommandError, match=r"^ledger_unavailable: The ledger did not answer"):
        call_command(command)
    assert _snapshot() == before


def test_rebuild_goes_a_few_patients_at_a_time_and_each_group_is_replaced_whole(
    patient_user, other_patient_user, terms, monkeypatch
):
    """Memory holds one group's consents: the ledger is read group by group, each group's rows replaced in a
    transaction of its own, and a ledger that stops answering half way leaves the groups not reached as they were."""
    from consent.services import consent_mirror_rebuild
    from health_platform import bootstrap
    from ledger import LedgerUnavailable

    grant_signed(actor=patient_user, patient=patient_user.patient, **terms)
    grant_signed(actor=other_patient_user, patient=other_patient_user.patient, **terms)
    truth = _snapshot()
    Consent.objects.update(status="revoked")  # both groups' rows wrong
    contracts = type(bootstrap.contracts())
    read = contracts.consents_of_patient
    order = sorted([patient_user.patient, other_patient_user.patient], key=lambda patient: patient.pk)
    reads: list[str] = []

    def second_group_unanswered(self, pseudonym, **keywords):
        reads.append(pseudonym)
        if pseudonym == order[1].pseudonym:
            raise LedgerUnavailable("down")
        return read(self, pseudonym, **keywords)

    monkeypatch.setattr(contracts, "consents_of_patient", second_group_unanswered)
    with pytest.raises(LedgerUnavailable):
        consent_mirror_rebuild(patients_per_transaction=1)
    assert reads == [patient.pseudonym for patient in order]
    statuses = dict(Consent.objects.values_list("patient_id", "status"))
    assert statuses == {order[0].pk: "active", order[1].pk: "revoked"}  # the first group rebuilt, the second kept

    monkeypatch.setattr(contracts, "consents_of_patient", read)
    assert consent_mirror_rebuild(patients_per_transaction=1) == 2
    assert _snapshot() == truth
