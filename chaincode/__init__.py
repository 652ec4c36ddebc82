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
    EraseRecords(erasure_json: {erasure_id, patient_pseudonym, record_ids: [record id, ...]})
        -> erasure (the same erasure again: unchanged); marks each anchor erased (+ erased, erasure_id, erased_at);
           an erased anchor takes no further version (code erased)
    ReadErasure(erasure_id)                                        -> erasure
    erasure = {erasure_id, patient_pseudonym, record_ids (sorted), count, records_sha256 (SHA-256 of the sorted
               ids joined by newlines), erased_at, tx_id}

Contract "consent" (chaincode.contracts.consent): only what the patient signed (chaincode.webauthn)
    GrantConsent(document_json: {action: grant_consent, patient_pseudonym, issued_at, grants: [{consent_id,
                 grantee, purposes, categories, valid_from, valid_until}, ...]}, signature_json) -> [consent]
    RevokeConsent(document_json: {action: revoke_consent, patient_pseudonym, consent_id, issued_at},
                  signature_json)                                  -> consent (idempotent)
    signature = {credential_id, authenticator_data, client_data_json, signature}: a WebAuthn assertion whose
                challenge is SHA-256 of the document's canonical JSON
    ReadConsent(patient_pseudonym, consent_id) / ConsentHistory(patient_pseudonym, consent_id)
    ListConsentsForPatient(patient_pseudonym)      (a consent is its patient's: the id names it within the patient)
    ReadConsentSignature(tx_id, document_sha256)                   -> {document, document_sha256, signature...}
    CheckAccessBatch(request_json: {grantee, organisation, purpose, at, items: [{record_id, category, sha256}],
                     declaration_id (purpose emergency only)})
        -> {at, grantee, purpose, results: [{record_id, decision, reason, consent_id, patient_pseudonym}]}
        reasons checked first: no_anchor, erased (EraseRecords), hash_mismatch

Contract "patient_keys" (chaincode.contracts.patient_keys): the passkeys whose signatures change consents
    EnrolPatientKey(key_json: {patient_pseudonym, credential_id, public_key, rp_id_hash, origin})
        (the platform; only while the patient has no active key)                  -> entry
    EnrolPatientKeys(keys_json: [key, ...]) (1-64, each of another patient; each enrolled or refused alone)
        -> [{entry} | {error: {code, message}}, ...]
    AddPatientKey(key_json + {action: add_patient_key, issued_at}, signature_json) -> entry
    RevokePatientKey({action: revoke_patient_key, patient_pseudonym, credential_id, issued_at}, signature_json)
    RecoverPatientKeys({recovery_id, patient_pseudonym, custodian, reason})  -> entry (every key revoked)
    ReadPatientKeys(patient_pseudonym) / PatientKeysHistory(patient_pseudonym)
    entry = {patient_pseudonym, keys: [{credential_id, public_key, rp_id_hash, origin, status, sign_count,
             added_at, added_tx_id, added_by, revoked_*}], recoveries: [{recovery_id, custodian, reason, revoked,
             at, tx_id}]}; on the ledger the entry also holds the patient's consents (chaincode.contracts.patients)

Contract "accesslog" (chaincode.contracts.access_log): one state entry per batch of events
    AppendAccessEvents(batch_json: {batch_id, events: [event, ...]})
        -> {batch_id, count, recorded_at, tx_id, appended}  (an identical batch again: appended false)
    ReadAccessBatch(batch_id) -> {batch_id, recorded_at, tx_id, events}
    QueryAccessEvents(query_json: {request_id, patient_pseudonym, grantee, since, until, limit, bookmark})
        -> {events: [event + batch_id, position, recorded_at, tx_id], bookmark}
    event = {event_id, kind, record_id, patient_pseudonym, grantee, purpose, request_id, consent_id, model_hash,
             category, decision, reason, export_sha256}
    kind: record_access (an analysis), record_read (a read for treatment: admitted ones name their consent; in an
          emergency: the declaration as request_id), export, outcome; and, written only by the contracts below,
          emergency_declared, emergency_review, alert, alert_triage

Contract "emergency" (chaincode.contracts.oversight): break-the-glass
    DeclareEmergency(declaration_json: {declaration_id, grantee, organisation, patient_pseudonym, reason,
                     justification_sha256, duration_seconds})  -> declaration + logged (batch emergency:<id>)
    ReviewEmergency(review_json: {subject_id, reviewer, verdict, note_sha256}) -> declaration + logged
    ReadEmergency(declaration_id)
    SetEmergencyRefusals(patient_pseudonym, categories_json) / ReadEmergencyRefusals / EmergencyRefusalHistory

Contract "alerts" (chaincode.contracts.oversight): the misuse detector's alerts
    RaiseAlerts(run_json: {run_id, detector_name, detector_version, detector_sha256,
                alerts: [{alert_id, grantee, day, score, reasons}]})  -> {run_id, detector..., logged}
    TriageAlert(triage_json: {subject_id, reviewer, verdict, note_sha256}) -> alert + logged
    ReadAlert(alert_id)

Contract "directory" (chaincode.contracts.directory): the grantee directory's status
    RegisterGrantee(grantee)                  -> entry (an existing entry is answered unchanged)
    SetGranteeStatus(grantee, status)         -> entry (status: active | inactive; only the registering MSP)
    ReadGrantee(grantee) / GranteeHistory(grantee) / ListGrantees()
    entry = {grantee, status, registered_by, registered_at, changed_at, tx_id}
    CheckAccessBatch refuses with grantee_inactive what only an inactive grantee's consents would admit.

Contract "training" (chaincode.contracts.training): training lineage (issue 18)
    RecordTrainingRun(run_json: {run_id, model_family, model_version, steward, organisations: [{organisation,
                      training_set_root, consent_root, record_count, consent_count}], training_set_root, consent_root,
                      record_count, consent_count, trainer_sha256, hyperparameters, rounds, round_aggregates,
                      metrics, dp_epsilon, dp_delta, weights_sha256})
        -> run + {submitted_by, recorded_at, tx_id} (the same run again: unchanged; another under its id: refused)
    ReadTrainingRun(run_id) / ModelLineageByWeights(weights_sha256) -> run
    RetireModel / ReinstateModel({weights_sha256, reason, revocations}) -> status (idempotent)
    ReadModelStatus(weights_sha256) / ModelStatusHistory(weights_sha256)
    status = {weights_sha256, run_id, status (active | retired), reason, revocations, changed_by, changed_at, tx_id}
    The Merkle roots are chaincode.merkle's (RFC 6962) over training_set_leaf and consent_leaf.

Errors are raised as ContractError and reach the client as "code: message".
"""

from chaincode.library import ContractChaincode


def build_chaincode() -> ContractChaincode:
    """The chaincode with all its contracts, as both the embedded ledger and the peer run it."""
    from chaincode.contracts.access_log import AccessLogContract
    from chaincode.contracts.anchors import AnchorContract
    from chaincode.contracts.consent import ConsentContract
    from chaincode.contracts.directory import DirectoryContract
    from chaincode.contracts.oversight import AlertContract, EmergencyContract
    from chaincode.contracts.patient_keys import PatientKeyContract
    from chaincode.contracts.training import TrainingContract

    return ContractChaincode.new_chaincode(
        AnchorContract(),
        ConsentContract(),
        AccessLogContract(),
        DirectoryContract(),
        EmergencyContract(),
        AlertContract(),
        PatientKeyContract(),
        TrainingContract(),
    )
