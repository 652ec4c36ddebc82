"""What a trained model's training set has become since: counted from the run's manifest against the consent mirror
and the erasures in a bounded number of queries, and the retirement policy's thresholds, checked at start."""

import os
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from consent.models import Consent, ConsentStatus
from health_platform.selectors import IN_LIST_CHUNK
from records.models import ErasureState, PatientErasure, Record
from tests.conftest import REPO
from tests.records.factories import PatientFactory
from tests.training.factories import TrainingRunFactory
from training.models import TrainingStatus
from training.selectors import SinceTrained, trained_model_since_trained
from training.services import retirement_due

ENTRIES = 6000  # records, each under a consent of its own


def _mirrored(patient, consent_id, status):
    now = timezone.now()
    return Consent(
        consent_id=consent_id,
        patient=patient,
        grantee="org:st-marys",
        purposes=["training:breast-cancer"],
        categories=["imaging"],
        valid_from=now,
        valid_until=now + timedelta(days=30),
        status=status,
        granted_at=now,
        granted_tx_id="tx",
    )


def test_a_manifest_of_thousands_is_counted_in_a_bounded_number_of_queries(db, steward, django_assert_max_num_queries):
    patient = PatientFactory()
    erased = []
    for state in (ErasureState.DONE, ErasureState.ON_LEDGER, ErasureState.DONE):
        erased_patient = PatientFactory()
        PatientErasure.objects.create(patient=erased_patient, state=state)
        erased.append(Record.objects.create(patient=erased_patient, category="imaging"))
    requested = PatientFactory()  # an erasure not yet on the ledger: the gate still reads the record, not counted
    PatientErasure.objects.create(patient=requested, state=ErasureState.REQUESTED)
    kept = Record.objects.create(patient=requested, category="imaging")
    records = [str(record.pk) for record in [*erased, kept]] + [str(uuid.uuid4()) for _ in range(ENTRIES - 4)]
    consents = [f"consent-{index}" for index in range(ENTRIES)]
    revoked = set(consents[::100])  # 60 revoked, of which consents[0] also admitted an erased record
    Consent.objects.bulk_create(
        _mirrored(patient, consent_id, ConsentStatus.REVOKED if consent_id in revoked else ConsentStatus.ACTIVE)
        for consent_id in consents
    )
    entries = [{"record_id": r, "consent_id": c} for r, c in zip(records, consents, strict=True)]
    run = TrainingRunFactory(
        steward=steward,
        status=TrainingStatus.COMPLETED,
        manifest={"org:northgate": entries[:2500], "org:st-marys": entries[2500:]},
    )
    bound = 2 * -(-ENTRIES // 500)  # one query per 500 consent ids, one per 500 record ids: 24, not thousands
    assert IN_LIST_CHUNK == 500

    with django_assert_max_num_queries(bound):
        since = trained_model_since_trained(run=run)

    assert (since.records, since.consents, since.revoked_consents, since.erased_records) == (ENTRIES, ENTRIES, 60, 3)
    assert since.withdrawn_consents == 60 + 2  # the erased records' consents, one of them revoked as well


@pytest.mark.parametrize(
    ("fraction", "count", "withdrawn", "due"),
    [
        (0.05, None, 5, False),  # 5 of 100 is not MORE than 5 %
        (0.05, None, 6, True),
        (None, 3, 3, False),
        (None, 3, 4, True),
        (0.5, 3, 4, True),  # whichever is crossed first
        (None, None, 100, False),  # both off: never retired for revocations
        (0.0, None, 0, False),  # nothing withdrawn: nothing to retire for
    ],
)
def test_the_policy_retires_past_either_threshold(settings, fraction, count, withdrawn, due):
    settings.TRAINING_RETIREMENT_REVOKED_FRACTION, settings.TRAINING_RETIREMENT_REVOKED_COUNT = fraction, count
    since = SinceTrained(100, 100, withdrawn, 0, withdrawn, "")
    assert retirement_due(since) is due


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRAINING_RETIREMENT_REVOKED_FRACTION", "five percent"),
        ("TRAINING_RETIREMENT_REVOKED_FRACTION", "1.5"),
        ("TRAINING_RETIREMENT_REVOKED_FRACTION", "nan"),
        ("TRAINING_RETIREMENT_REVOKED_COUNT", "-1"),
        ("TRAINING_RETIREMENT_REVOKED_COUNT", "2.5"),
    ],
)
def test_a_threshold_that_is_not_one_stops_the_start_naming_it(tmp_path, name, value):
    environment = {
        **os.environ,
        "HEALTH_PLATFORM_VAR_DIR": str(tmp_path),
        "HEALTH_PLATFORM_ENV_FILE": str(tmp_path / "none.env"),
        "DJANGO_SETTINGS_MODULE": "health_platform.settings",
        name: value,
    }
    started = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode != 0
    assert f"{name} must be" in started.stderr
    assert value not in started.stderr.splitlines()[-1].split("must be")[0]
