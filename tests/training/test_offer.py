"""The records each organisation's custodian offers a training run: the current records of the family's category
whose patients hold a live training consent to it, each record by one organisation, without a query per patient."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from health_platform.errors import ValidationFailed
from records.codes import BREAST_CANCER_DATASET, DIABETES_DATASET
from tests.signing import grant_signed, revoke_signed
from tests.training_world import consent_to_training
from training.selectors import training_candidates_offered


def test_each_record_is_offered_by_the_organisation_of_its_patients_earliest_live_training_consent(
    people, organisations
):
    everyone = people(BREAST_CANCER_DATASET, 8)
    st_marys, northgate = organisations
    consent_to_training(everyone[0], st_marys, BREAST_CANCER_DATASET)
    consent_to_training(everyone[1], northgate, BREAST_CANCER_DATASET)
    # consented to both: the earlier consent (Northgate's) offers the record, once
    consent_to_training(everyone[2], northgate, BREAST_CANCER_DATASET)
    consent_to_training(everyone[2], st_marys, BREAST_CANCER_DATASET)
    # revoked: not offered; the later consent to St Mary's still is
    revoked = consent_to_training(everyone[3], northgate, BREAST_CANCER_DATASET)
    consent_to_training(everyone[3], st_marys, BREAST_CANCER_DATASET)
    revoke_signed(actor=everyone[3].user, consent=revoked)
    # only to run the model, not to train it; to another family; not yet in force: none offered
    consent_to_training(everyone[4], st_marys, BREAST_CANCER_DATASET, purpose="diagnostic-model:breast-cancer")
    consent_to_training(everyone[5], st_marys, BREAST_CANCER_DATASET, purpose="training:diabetes-progression")
    now = timezone.now()
    grant_signed(
        actor=everyone[6].user,
        patient=everyone[6].patient,
        grantee_id=st_marys,
        purposes=["training:breast-cancer"],
        categories=["imaging"],
        valid_from=now + timedelta(days=2),
        valid_until=now + timedelta(days=30),
    )
    # everyone[7] never consented

    offered = training_candidates_offered(family="breast-cancer")

    assert offered == {
        northgate: sorted([everyone[1].version_id, everyone[2].version_id]),
        st_marys: sorted([everyone[0].version_id, everyone[3].version_id]),
    }
    assert list(offered) == sorted(offered)  # organisations in id order, as the run keeps them


def test_a_consent_that_does_not_cover_the_familys_category_offers_nothing(people, organisations):
    diabetes = people(DIABETES_DATASET, 1)[0]
    grant_signed(  # training:breast-cancer, but over laboratory results: the breast-cancer model reads imaging
        actor=diabetes.user,
        patient=diabetes.patient,
        grantee_id=organisations[0],
        purposes=["training:breast-cancer"],
        categories=["laboratory"],
        valid_from=timezone.now(),
        valid_until=timezone.now() + timedelta(days=30),
    )
    assert training_candidates_offered(family="breast-cancer") == {}
    consent_to_training(diabetes, organisations[0], DIABETES_DATASET)
    assert training_candidates_offered(family="diabetes-progression") == {organisations[0]: [diabetes.version_id]}


def test_an_unknown_family_is_refused(db):
    with pytest.raises(ValidationFailed) as refused:
        training_candidates_offered(family="no-such-family")
    assert refused.value.code == "unknown_model"


@pytest.mark.slow
def test_the_offer_of_fifty_patients_takes_a_fixed_number_of_queries(people, organisations):
    everyone = people(DIABETES_DATASET, 50)
    for index, person in enumerate(everyone):
        consent_to_training(person, organisations[index % 2], DIABETES_DATASET)
    with CaptureQueriesContext(connection) as queries:
        offered = training_candidates_offered(family="diabetes-progression")
    assert sorted(len(ids) for ids in offered.values()) == [25, 25]
    assert len(queries) <= 3, [query["sql"] for query in queries.captured_queries]
