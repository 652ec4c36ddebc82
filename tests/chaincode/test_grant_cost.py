"""What a consent change asks of the peer: on Fabric every state call of a transaction is one round trip on the
chaincode stream, answered by each endorsing peer, and every key read or written is checked or written again by
every peer at commit. A grant and a revocation make only the calls their checks and their records need.

Counted on the embedded ledger, whose stub the contracts call exactly as they call Fabric's shim.
"""

import json
from collections import Counter

import pytest

from ledger.embedded import EmbeddedLedger, _EmbeddedStub
from tests.chaincode.conftest import Passkeys, grant_document, grant_terms, now, pseudonym, revoke_document, rfc3339
from tests.chaincode.test_patient_signatures import forge

BREAST_CANCER = "diagnostic-model:breast-cancer"
CALLS = ("get_state", "get_states", "put_state", "delete_state", "get_state_by_range")


@pytest.fixture
def ledger(tmp_path):
    ledger = EmbeddedLedger(tmp_path / "ledger.sqlite3")
    yield ledger
    ledger.close()


@pytest.fixture
def calls(monkeypatch) -> Counter:
    """Every state call a contract makes from now on, by name."""
    counted: Counter = Counter()
    for name in CALLS:
        original = getattr(_EmbeddedStub, name)

        async def counting(self, *arguments, _original=original, _name=name):
            counted[_name] += 1
            return await _original(self, *arguments)

        monkeypatch.setattr(_EmbeddedStub, name, counting)
    return counted


def test_a_grant_reads_the_patients_entry_and_writes_it_and_its_signed_document(ledger, calls):
    passkeys = Passkeys(ledger)
    passkeys.of(pseudonym(1))  # enrolled before counting
    calls.clear()

    passkeys.grant(pseudonym(1), grant_terms("c-1"))

    # The patient's entry (keys and consents) read and written back; the signed document kept for the transaction.
    # No read of the consent id (the patient's consents are in the entry), no index, no second list.
    assert calls == Counter(get_state=1, put_state=2)

    calls.clear()
    passkeys.grant(pseudonym(1), grant_terms("c-2"))
    assert calls == Counter(get_state=1, put_state=2)


def test_a_revocation_reads_and_writes_the_patients_entry_and_keeps_its_signed_document(ledger, calls):
    passkeys = Passkeys(ledger)
    passkeys.grant(pseudonym(1), grant_terms("c-1"))
    calls.clear()

    passkeys.revoke("c-1", pseudonym(1))
    assert calls == Counter(get_state=1, put_state=2)


def test_grants_of_many_patients_in_one_transaction_keep_their_signed_documents_once(ledger, calls):
    passkeys = Passkeys(ledger)
    requests = []
    for n in range(1, 5):
        document = grant_document(pseudonym(n), grant_terms(f"c-{n}"))
        requests.append({"document": document, "signature": passkeys.of(pseudonym(n)).sign(document)})
    calls.clear()

    ledger.submit("consent", "GrantConsents", json.dumps([{k: json.dumps(v) for k, v in r.items()} for r in requests]))

    assert calls == Counter(get_state=4, put_state=4 + 1)


def test_an_enrolment_looks_at_the_earlier_layouts_once_so_grants_never_do(ledger, calls):
    Passkeys(ledger).of(pseudonym(1))
    # The entry (none); whether the ledger holds consents of the earlier layouts (none: two range reads); the
    # credential's owner (none). The entry and the credential written.
    assert calls == Counter(get_state=2, get_state_by_range=2, put_state=2)


def test_the_gate_reads_nothing_more_for_patients_without_an_entry_on_a_ledger_without_earlier_layouts(ledger, calls):
    """Most patients of a cohort may have no consent at all: their entries are absent, and on a ledger that never
    held the earlier layouts two range reads settle it for the whole batch, however many such patients."""
    Passkeys(ledger).grant(pseudonym(1), grant_terms("c-1"))
    for n in range(1, 41):
        ledger.submit("anchors", "AnchorRecord", f"rec-{n}", pseudonym(n), f"{n:064x}", "1")
    items = [{"record_id": f"rec-{n}", "category": "imaging", "sha256": f"{n:064x}"} for n in range(1, 41)]
    request = {"grantee": "clinician:alice", "purpose": BREAST_CANCER, "at": rfc3339(now()), "items": items}
    calls.clear()

    results = ledger.evaluate("consent", "CheckAccessBatch", json.dumps(request)).json()["results"]

    assert [r["decision"] for r in results] == ["admit"] + ["refuse"] * 39
    assert {r["reason"] for r in results[1:]} == {"no_consent"}
    # The anchors, the entries (one read each, of many keys); the grantee's status; the two range reads.
    assert calls == Counter(get_states=2, get_state=1, get_state_by_range=2)


def test_a_revocation_already_applied_reads_only_the_patients_entry(ledger, calls):
    passkeys = Passkeys(ledger)
    passkeys.grant(pseudonym(1), grant_terms("c-1"))
    passkeys.revoke("c-1", pseudonym(1))
    calls.clear()

    again = revoke_document("c-1", pseudonym(1))
    signature = passkeys.of(pseudonym(1)).sign(again)
    ledger.submit("consent", "RevokeConsent", json.dumps(again), json.dumps(signature))
    assert calls == Counter(get_state=1)


def test_a_passkey_without_a_counter_leaves_the_patients_keys_history_as_it_was(ledger, calls):
    """Synced passkeys report counter 0 every time: the keys do not change, and their history shows no change."""
    passkeys = Passkeys(ledger)
    passkey = passkeys.of(pseudonym(1))
    history = ledger.evaluate("patient_keys", "PatientKeysHistory", pseudonym(1)).json()
    calls.clear()

    for name in ("c-1", "c-2"):
        document = grant_document(pseudonym(1), grant_terms(name))
        ledger.submit("consent", "GrantConsent", json.dumps(document), json.dumps(forge(passkey, document, counter=0)))

    assert calls["put_state"] == 2 * 2
    assert ledger.evaluate("patient_keys", "PatientKeysHistory", pseudonym(1)).json() == history
    assert len(ledger.evaluate("consent", "ListConsentsForPatient", pseudonym(1)).json()) == 2
