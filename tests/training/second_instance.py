"""The second platform instance of the two-instance training tests (tests/training/test_two_instances.py, and on
Fabric tests/fabric/test_training.py), and their scenario. Northgate's own database, var folder (its own record and
pseudonym keys), blob folder and broker, sharing only the ledger with the test's instance (St Mary's).

    python -m tests.training.second_instance seed COUNT    (in that instance's environment: Instance.environment)

migrates its database, registers both organisations, ingests the breast-cancer demo patients 0..COUNT-1 (anchored on
the shared ledger), has each consent to Northgate training the breast-cancer model, and tampers with the first one's
stored record. Prints {"records": [record ids], "tampered": record id} as JSON on its last line. The patients'
software passkeys are kept in the instance's var folder, so that

    python -m tests.training.second_instance revoke RECORD_ID

can have the record's patient revoke their consent there, signed by their own passkey."""

import base64
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ST_MARYS, NORTHGATE = "org:st-marys", "org:northgate"
NORTHGATE_PATIENTS = 5  # the first one's record tampered with


def seed(count: int) -> dict:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "health_platform.settings")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from records.codes import BREAST_CANCER_DATASET
    from tests.conftest import tamper_with
    from tests.training_world import consent_to_training, people_ingested, two_organisations

    _, northgate = two_organisations()
    people = people_ingested(BREAST_CANCER_DATASET, count)
    for person in people:
        consent_to_training(person, northgate, BREAST_CANCER_DATASET)
    tamper_with(people[0].record)
    _passkeys_keep()
    return {"records": [str(person.record.pk) for person in people], "tampered": str(people[0].record.pk)}


def _passkeys_file() -> Path:
    return Path(os.environ["HEALTH_PLATFORM_VAR_DIR"]) / "test-passkeys.json"


def _passkeys_keep() -> None:
    from cryptography.hazmat.primitives import serialization

    from tests.signing import _passkeys

    kept = {
        pseudonym: {
            "private_key": passkey.private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode(),
            "credential_id": base64.b64encode(passkey.credential_id).decode(),
            "counter": passkey.counter,
            "rp_id": passkey.rp_id,
            "origin": passkey.origin,
        }
        for pseudonym, passkey in _passkeys.items()
    }
    _passkeys_file().write_text(json.dumps(kept))


def patient_view(record_id: str) -> dict:
    """What the record's patient sees at this instance once the sweep has looked for the lineage on the ledger: the
    models their records trained (their page's rows) and the proof for this record, or the error's code."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "health_platform.settings")
    django.setup()
    from health_platform.errors import ApplicationError
    from records.models import Record
    from training.participation import participations_lineage_confirm
    from training.selectors import models_trained_on_patient, training_record_proof_for_patient

    confirmed = participations_lineage_confirm()
    patient = Record.objects.get(pk=record_id).patient
    models = models_trained_on_patient(patient=patient)
    seen: dict = {
        "confirmed": confirmed,
        "models": [
            {"run_id": m.run_id, "model": m.model, "part_of": m.part_of, "records": [r.record_id for r in m.records]}
            for m in models
        ],
    }
    for m in models:
        try:
            seen["proof"] = training_record_proof_for_patient(patient=patient, run_id=m.run_id, record_id=record_id)
        except ApplicationError as error:
            seen["proof_error"] = error.code
    return seen


def revoke(record_id: str) -> dict:
    """The record's patient revokes their consent at this instance, signed by the passkey seed() kept."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "health_platform.settings")
    django.setup()
    from cryptography.hazmat.primitives import serialization

    from consent.models import Consent
    from health_platform.software_passkey import SoftwarePasskey
    from records.models import Record
    from tests.signing import _passkeys, revoke_signed

    for pseudonym, kept in json.loads(_passkeys_file().read_text()).items():
        _passkeys[pseudonym] = SoftwarePasskey(
            rp_id=kept["rp_id"],
            origin=kept["origin"],
            private_key=serialization.load_pem_private_key(kept["private_key"].encode(), password=None),
            credential_id=base64.b64decode(kept["credential_id"]),
            counter=kept["counter"],
        )
    patient = Record.objects.get(pk=record_id).patient
    consent = revoke_signed(actor=patient.user, consent=Consent.objects.get(patient=patient))
    return {"consent_id": consent.consent_id}


class Instance:
    """Northgate's instance: its folder, its environment, and its database read from outside."""

    def __init__(self, folder: Path, key: bytes, ledger: dict[str, str]):
        self.folder = folder
        broker = folder / "broker"
        for sub in ("queue", "processed"):
            (broker / sub).mkdir(parents=True)
        self.database = folder / "northgate.sqlite3"
        self.environment = {
            "HEALTH_PLATFORM_VAR_DIR": str(folder / "var"),
            "DATABASE_URL": f"sqlite:///{self.database}",
            **ledger,  # LEDGER_URL (and on Fabric the client identity of Northgate's organisation)
            "ANALYTICS_BLOB_DIR": str(folder / "blobs"),
            "AUDIT_EXPORT_DIR": str(folder / "exports"),
            "CELERY_BROKER_URL": "filesystem://",
            "CELERY_FILESYSTEM_BROKER_DIR": str(broker),
            "TRAINING_HOSTED_ORGANISATIONS": NORTHGATE,
            "TRAINING_FEDERATION_PEERS": json.dumps(
                {ST_MARYS: {"url": "http://127.0.0.1:9", "key": base64.b64encode(key).decode()}}
            ),
        }

    def seed(self, count: int) -> dict:
        return self._command("seed", str(count))

    def revoke(self, record_id: str) -> dict:
        return self._command("revoke", record_id)

    def patient_view(self, record_id: str) -> dict:
        return self._command("patient-view", record_id)

    def _command(self, *arguments: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "tests.training.second_instance", *arguments],
            cwd=REPO,
            env={**os.environ, **self.environment},
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def rows(self, query: str, *parameters) -> list[tuple]:
        with sqlite3.connect(self.database) as database:
            return database.execute(query, parameters).fetchall()


def federated_across_two_instances(instance: Instance, key: bytes, steward, people, settings, start_web, start_worker):
    """The scenario of both backends' two-instance tests (tests/training/test_two_instances.py, and on Fabric
    tests/fabric/test_training.py): St Mary's is the test's process, `instance` Northgate's; the steward's run first
    meets Northgate's web server away (it waits), then completes across both. Returns the completed run."""
    from analytics.selectors import diagnostic_model_get
    from audit.models import AccessEvent
    from chaincode import merkle
    from consent.models import Consent
    from health_platform import bootstrap
    from records.codes import BREAST_CANCER_DATASET
    from records.models import Record
    from tests.training_world import consent_to_training
    from training.models import TrainingSetEntry, TrainingStatus
    from training.peers import Peer
    from training.selectors import training_run_lineage_differences, training_run_verify
    from training.services import trained_models_standing_evaluate, training_run_execute, training_run_request

    seeded = instance.seed(NORTHGATE_PATIENTS)
    st_marys_people = people(BREAST_CANCER_DATASET, 4)
    for person in st_marys_people:
        consent_to_training(person, ST_MARYS, BREAST_CANCER_DATASET)
    settings.TRAINING_HOSTED_ORGANISATIONS = [ST_MARYS]
    settings.TRAINING_AGGREGATOR_HOST = "127.0.0.1"
    settings.TRAINING_CONNECT_SECONDS = 90
    settings.TRAINING_PEER_TIMEOUT_SECONDS = 10.0

    # Northgate's web server is not up yet: the run waits, trains nothing, and asks nothing of the ledger.
    settings.TRAINING_FEDERATION_PEERS = {NORTHGATE: Peer(NORTHGATE, "http://127.0.0.1:9", key)}
    run = training_run_request(steward=steward, family="breast-cancer", rounds=2)
    assert run.invited == [NORTHGATE]
    assert set(run.organisations) == {ST_MARYS}  # Northgate's records are not in this database
    waiting = training_run_execute(run_id=str(run.pk))
    assert (waiting.status, waiting.attempts, waiting.failure_code) == (TrainingStatus.QUEUED, 1, "")
    assert not AccessEvent.objects.filter(request_id=str(run.pk)).exists()

    web = start_web(overrides=instance.environment)
    start_worker(overrides=instance.environment, queues="custodian")
    settings.TRAINING_FEDERATION_PEERS = {NORTHGATE: Peer(NORTHGATE, web.url, key)}
    done = training_run_execute(run_id=str(run.pk))
    for _ in range(5):  # as the task's retries would: Northgate's instance busy starting (its database locked, 503)
        if done.status != TrainingStatus.QUEUED:
            break
        time.sleep(2)
        done = training_run_execute(run_id=str(run.pk))

    assert done.status == TrainingStatus.COMPLETED, done.failure_code
    northgate_records = {entry["record_id"] for entry in done.manifest[NORTHGATE]}
    assert northgate_records == set(seeded["records"]) - {seeded["tampered"]}
    assert not Record.objects.filter(pk__in=northgate_records).exists()  # never in St Mary's database
    assert {entry["record_id"] for entry in done.manifest[ST_MARYS]} == {str(p.record.pk) for p in st_marys_people}
    assert done.organisation_counts[NORTHGATE]["offered"] == NORTHGATE_PATIENTS
    assert done.organisation_counts[NORTHGATE]["refused"] == {"hash_mismatch": 1}
    rounds = list(done.rounds.order_by("index"))
    assert [r.index for r in rounds] == [1, 2]
    # each round, each organisation's update covered its records that train (the others are held out to validate)
    trains = {o: sum(entry["split"] == "train" for entry in done.manifest[o]) for o in (NORTHGATE, ST_MARYS)}
    assert [r.contributions for r in rounds] == [trains, trains]

    # The lineage on the ledger holds both organisations, Northgate's tampered record left out and said why.
    lineage = bootstrap.contracts().read_training_run(str(run.pk))
    by_organisation = {o.organisation: o for o in lineage.organisations}
    assert by_organisation[NORTHGATE].record_count == NORTHGATE_PATIENTS - 1
    assert dict(by_organisation[NORTHGATE].left_out) == {"hash_mismatch": 1}
    assert by_organisation[ST_MARYS].record_count == 4
    assert training_run_lineage_differences(run=done) == []
    # manage.py verify_model_lineage's check: the roots rebuilt from the ledger's anchors of every record version,
    # Northgate's included (anchored by Northgate's instance), agree with the lineage
    verified = training_run_verify(run=done)
    assert (verified.ok, verified.records_checked, verified.organisations) == (True, 8, [NORTHGATE, ST_MARYS])
    # St Mary's index holds its own records only; Northgate's are indexed nowhere here.
    assert set(TrainingSetEntry.objects.filter(run=done).values_list("organisation", flat=True)) == {ST_MARYS}

    # Northgate gated and logged its own records, in its own database, each round; St Mary's logged none of them.
    logged = instance.rows(
        "SELECT decision, reason FROM audit_accessevent WHERE request_id = ? AND kind = 'record_access'", str(run.pk)
    )
    assert len(logged) == NORTHGATE_PATIENTS * 2
    assert sorted({tuple(row) for row in logged}) == [("admit", ""), ("refuse", "hash_mismatch")]
    assert AccessEvent.objects.filter(request_id=str(run.pk), grantee=NORTHGATE).count() == 0
    assert AccessEvent.objects.filter(request_id=str(run.pk), grantee=ST_MARYS).count() == 4 * 2
    participations = instance.rows(
        "SELECT attempt, status FROM training_trainingparticipation ORDER BY attempt DESC LIMIT 1"
    )
    assert participations == [(done.attempts, "completed")]

    # Northgate's patients see, at Northgate, the model their records trained, with a proof against Northgate's part
    # of the lineage on the ledger that verifies offline; the tampered record's patient sees none.
    used = sorted(northgate_records)[0]
    seen = instance.patient_view(used)
    assert seen["confirmed"] == 1
    assert seen["models"] == [
        {
            "run_id": str(run.pk),
            "model": f"{done.model_name}@{done.model_version}",
            "part_of": NORTHGATE,
            "records": [used],
        }
    ]
    proof = seen["proof"]
    assert merkle.verify_document(proof)
    assert (proof["root"], proof["size"]) == (by_organisation[NORTHGATE].training_set_root, NORTHGATE_PATIENTS - 1)
    assert proof["about"]["lineage_tx_id"] == lineage.tx_id
    assert instance.patient_view(seeded["tampered"])["models"] == []

    # A Northgate patient revokes their training consent at Northgate, in Northgate's database and on the ledger:
    # St Mary's counts it against the model (1 consent of 8 withdrawn: past the default 5 %, the model is retired).
    revoked = instance.revoke(used)
    assert not Consent.objects.filter(consent_id=revoked["consent_id"]).exists()  # not in St Mary's mirror
    trained_models_standing_evaluate()
    model = diagnostic_model_get(name=done.model_name, version=done.model_version)
    assert (model.since_trained["revoked_consents"], model.since_trained["consents"]) == (1, 8)
    assert model.retired_at is not None
    return done


if __name__ == "__main__":
    command, argument = sys.argv[1:3]
    commands = {"seed": lambda: seed(int(argument)), "revoke": lambda: revoke(argument)}
    commands["patient-view"] = lambda: patient_view(argument)
    print(json.dumps(commands[command](), default=str))
