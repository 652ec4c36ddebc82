"""An organisation's copy of the state edited behind the ledger's back cannot admit a record.

On the real network: peer0.research is stopped, the anchor of one record is rewritten in its LevelDB state
database (the world state Fabric keeps for the chaincode) so that it matches an edited copy of the record, and
the peer is started again. That peer alone now admits the edited record; but the gate is endorsed by both
organisations (ledger.LedgerClient.evaluate_endorsed), the hospital's peer answers from its own untouched
state, the Gateway refuses the mismatched endorsements, and the analysis fails closed: its batch is not gated,
nothing is logged as admitted, nothing is computed. The true record is refused just the same, since the two
copies disagree about it: neither organisation's copy alone decides.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from datetime import UTC, datetime

import plyvel
import pytest

from analytics.models import AnalysisBatch, BatchStatus
from analytics.pipeline import LedgerNotAnswering, analysis_batch_advance, analysis_start
from analytics.services import analysis_request_create
from audit.models import AccessEvent
from chaincode.validation import format_timestamp
from ledger import TransactionConflict
from ledger.contracts import AccessItem, Contracts
from ledger.fabric import FabricLedger
from records.models import RecordVersion
from tests.conftest import grant
from tests.fabric.blocks import length_delimited
from tests.fabric.network import FabricNetwork, until_available

pytestmark = [pytest.mark.fabric, pytest.mark.he, pytest.mark.django_db(transaction=True)]

PEER = "peer0.research"
CHANNEL = NAMESPACE = "health"  # the channel and the chaincode (network/env.sh)
EDITED = "e" * 64  # the hash of the attacker's edited record


# --- a peer's LevelDB state database --------------------------------------------------------------
def state_key(key: str) -> bytes:
    """Where Fabric v2.5 keeps a chaincode's key in the peer's state LevelDB: the channel's database name, 0x00
    (leveldbhelper), then 'd', the namespace, 0x00 and the key (stateleveldb.encodeDataKey)."""
    return CHANNEL.encode() + b"\x00" + b"d" + NAMESPACE.encode() + b"\x00" + key.encode()


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        value, shift, at = value | (byte & 0x7F) << shift, shift + 7, at + 1
        if not byte & 0x80:
            return value, at


def db_value_fields(encoded: bytes) -> dict[int, bytes]:
    """stateleveldb's DBValue {bytes version = 1; bytes value = 2; bytes metadata = 3;}, field by field."""
    fields, at = {}, 0
    while at < len(encoded):
        tag, at = _varint(encoded, at)
        assert tag & 7 == 2, "DBValue holds length-delimited fields only"
        length, at = _varint(encoded, at)
        fields[tag >> 3], at = encoded[at : at + length], at + length
    return fields


def db_value(fields: dict[int, bytes]) -> bytes:
    return b"".join(length_delimited(number, data) for number, data in sorted(fields.items()) if data)


@contextmanager
def node_down(network: FabricNetwork, name: str):
    """The node crashed (its files released) for the block, then started again as network/fabric.sh starts it."""
    network.kill(name)
    try:
        yield
    finally:
        network.start_node(name)


def edit_state(network: FabricNetwork, key: str, change) -> None:
    """Rewrite `key`'s value in PEER's state database (the peer must be stopped): value = change(value)."""
    database = network.directory / "orgs" / "research" / "data" / PEER / "ledgersData" / "stateLeveldb"
    assert database.is_dir(), f"no state database at {database}"
    db = plyvel.DB(str(database), create_if_missing=False)
    try:
        stored = db.get(state_key(key))
        assert stored is not None, "the anchor is not where Fabric v2.5 keeps it"
        fields = db_value_fields(stored)
        fields[2] = change(fields[2])  # the version (1) is kept: to the peer it is the committed value
        db.put(state_key(key), db_value(fields))
    finally:
        db.close()


# --- the test --------------------------------------------------------------------------------------
def test_one_organisations_edited_state_cannot_admit_a_record_and_the_analysis_fails_closed(
    cohort, clinician, models_registered, ledger, blob_dir, eager, monkeypatch, fabric_network
):
    (_, p0, r0), (_, p1, _) = people = cohort(2)
    for user, patient, _ in people:
        grant(user, patient, clinician)
    version = RecordVersion.objects.filter(record=r0).latest("version")
    contracts = Contracts(ledger)
    anchor_key = f"\x00anchor\x00{r0.id}\x00"

    def edited(value: bytes) -> bytes:
        anchor = json.loads(value)
        assert anchor["sha256"] == version.sha256
        return json.dumps({**anchor, "sha256": EDITED}, sort_keys=True, separators=(",", ":")).encode()

    with node_down(fabric_network, PEER):
        edit_state(fabric_network, anchor_key, edited)

    def gate(client, digest: str) -> dict:
        request = {
            "grantee": clinician.clinician_profile.grantee_id,
            "purpose": "diagnostic-model:breast-cancer",
            "at": format_timestamp(datetime.now(UTC)),
            "items": [{"record_id": str(r0.id), "category": "imaging", "sha256": digest}],
        }
        return client.evaluate("consent", "CheckAccessBatch", json.dumps(request)).json()["results"][0]

    # The edited peer, asked alone, admits the edited record; the hospital's peer refuses it.
    hospital_gateway, research_gateway = ledger.endpoints
    alone = {}
    for name, gateway in (("research", research_gateway), ("hospital", hospital_gateway)):
        single = FabricLedger.from_url(
            f"fabric://{gateway}/{CHANNEL}/{NAMESPACE}", environ=fabric_network.client_environment
        )
        try:
            alone[name] = until_available(lambda single=single: gate(single, EDITED), 90)["decision"]
        finally:
            single.close()
    assert alone == {"research": "admit", "hospital": "refuse"}

    # Endorsed by both organisations, neither the edited nor the true record is admitted.
    for digest in (EDITED, version.sha256):
        with pytest.raises(TransactionConflict):
            until_available_but(
                lambda digest=digest: contracts.check_access_batch(
                    grantee=clinician.clinician_profile.grantee_id,
                    organisation=None,
                    purpose="diagnostic-model:breast-cancer",
                    at=format_timestamp(datetime.now(UTC)),
                    items=[AccessItem(str(r0.id), "imaging", digest)],
                )
            )

    # The analysis over both patients: its one batch cannot be gated; nothing is logged, nothing computed.
    monkeypatch.setattr("analytics.services._enqueue_start", lambda request_id: None)
    request = analysis_request_create(
        requester=clinician, model_name="breast-cancer", cohort_kind="explicit", pseudonyms=[p0.pseudonym, p1.pseudonym]
    )
    (batch_id,) = analysis_start(request_id=str(request.pk))
    with pytest.raises(LedgerNotAnswering):
        analysis_batch_advance(batch_id=batch_id, claimant="gate")
    batch = AnalysisBatch.objects.get(pk=batch_id)
    assert batch.status == BatchStatus.PENDING
    assert batch.admitted_count == 0
    assert not batch.column_keys
    assert not AccessEvent.objects.filter(request_id=str(request.pk)).exists()
    on_chain = ledger.evaluate("accesslog", "QueryAccessEvents", json.dumps({"request_id": str(request.pk)})).json()
    assert on_chain["events"] == []


def until_available_but(call):
    """call() through a peer restart's gossip window (LedgerUnavailable other than a disagreement is waited out),
    letting TransactionConflict (the organisations disagree) through to the caller."""
    from ledger import LedgerUnavailable

    deadline = time.monotonic() + 90
    while True:
        try:
            return call()
        except TransactionConflict:
            raise
        except LedgerUnavailable:
            assert time.monotonic() < deadline, "the ledger was still unavailable after 90 s"
            time.sleep(1)
