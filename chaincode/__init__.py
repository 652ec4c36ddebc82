"""The smart contracts, in Python on fabric-chaincode-python. Free of Django.

The same contracts run in-process on the embedded ledger (ledger.embedded) and, as a chaincode
service, on a Fabric peer. Every argument is a string (as on Fabric); every answer is JSON.
Only pseudonyms, hashes, codes and timestamps are ever written: never health data or names.

Contract "anchors" (chaincode.contracts.anchors):
    AnchorRecord(record_id, patient_pseudonym, sha256, version)  -> anchor
    AnchorRecords(anchors_json: [{record_id, patient_pseudonym, sha256, version}, ...]) -> [anchor]
    ReadAnchor(record_id)                                          -> anchor (latest version)
    AnchorHistory(record_id)                                       -> [{tx_id, timestamp, is_delete, value}]
    anchor = {record_id, patient_pseudonym, sha256, version, anchored_at, tx_id}
    AnchorModel(model_name, model_version, sha256)                 -> model anchor (immutable)
    ReadModelAnchor(model_name, model_version)                     -> model anchor

Contract "consent" (chaincode.contracts.consent):
    GrantConsent(consent_json: {consent_id, patient_pseudonym, grantee, purposes, categories,
                 valid_from, valid_until})                         -> consent
    RevokeConsent(consent_id)                                      -> consent (idempotent)
    ReadConsent(consent_id) / ConsentHistory(consent_id) / ListConsentsForPatient(patient_pseudonym)
    CheckAccessBatch(request_json: {grantee, purpose, at, items: [{record_id, category, sha256}]})
        -> {at, grantee, purpose, results: [{record_id, decision, reason, consent_id, patient_pseudonym}]}

Contract "accesslog" (chaincode.contracts.access_log):
    AppendAccessEvents(events_json: [event, ...])                  -> {count, event_ids, recorded_at}
    ReadAccessEvent(event_id)
    QueryAccessEvents(query_json: {patient_pseudonym | grantee | request_id, since, until, limit})

Errors are raised as ContractError and reach the client as "code: message".
"""

from chaincode.library import ContractChaincode


def build_chaincode() -> ContractChaincode:
    """The chaincode with all three contracts, as both the embedded ledger and the peer run it."""
    from chaincode.contracts.access_log import AccessLogContract
    from chaincode.contracts.anchors import AnchorContract
    from chaincode.contracts.consent import ConsentContract

    return ContractChaincode.new_chaincode(AnchorContract(), ConsentContract(), AccessLogContract())
