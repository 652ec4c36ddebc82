"""The permission matrix: every URL of the project × every method × every kind of user → the expected answer.

Users: anonymous, a patient and another patient, a clinician and another clinician, an auditor, a custodian, a
model steward (issue 18: no page or endpoint of the other roles; the model cards, shared by every role, aside), the
admin (a superuser holding no role), a staff member who is not a superuser (holding no role) and a
signed-in user with no role. Being staff gives nothing: outside the admin the staff member gets exactly the
answers of the user without a role (the only privilege beyond the roles is the superuser's, records.access,
which an is_staff check in its place would hand to staff), and in the admin only what Django gives staff
without model permissions.
Objects: each patient's record and consent, each clinician's analysis and emergency declaration, two auditors'
exports, and ids that exist nowhere. Unsafe methods are sent where a URL accepts them, with a valid body, so
"allowed" shows as success and "refused" cannot be a mere validation error.

Every method: each case names the method it sends; every other method (of GET, HEAD, POST, PUT, PATCH,
DELETE, OPTIONS) is sent to every URL too, with the route's valid body: HEAD must answer as the URL's GET or
405, OPTIONS must be refused or describe the route (an Allow naming exactly the methods its cases send), and
any other method must be refused (405, or the user's 401, 403, 404 or sign-in).

No effect: a refused request, and every request of a case that does not write, must leave the world as it
was: every table (the sessions aside: signing in writes them), the ledger's height and the platform's files.
A refusal checked by its status alone would pass a write followed by a 403.

The matrix is complete by construction: `test_every_url_pattern_is_in_the_matrix` walks the resolver and fails
when a URL appears that no case covers (or a case names a URL that is gone).

Conventions: API anonymous → 401; portal anonymous → sent to sign in ("login": a redirect, or htmx's
HX-Redirect for a panel); the admin's pages send everyone but staff to the admin's sign-in ("admin-login").
Another user's object is answered like an object that does not exist (404): a 403 would tell that it exists.
(The consent pages and the API's revoke answered another patient's consent 403 until issue 20; a missing one
404 in the API.) A user whose role may not use a page at all is refused 403 whatever the id.

The world is built once per module on a real embedded ledger (records ingested and anchored, consents
granted, one analysis run through the real pipeline, exports written and verified) and committed; each test
runs in a transaction that is rolled back, and the module flushes the database at the end.
"""

import functools
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pytest
from allauth.account.authentication import AUTHENTICATION_METHODS_SESSION_KEY
from allauth.account.forms import default_token_generator
from allauth.account.models import EmailAddress, EmailConfirmationHMAC
from allauth.account.utils import user_pk_to_url_str
from allauth.mfa.models import Authenticator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test import Client, override_settings
from django.test.client import BOUNDARY, MULTIPART_CONTENT, ClientHandler, encode_multipart
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from django.utils.http import urlencode
from rest_framework.authtoken.models import Token

from consent.models import Consent
from health_platform import bootstrap
from health_platform.roles import Role
from tests.accounts.passkeys import passkey_credential
from tests.conftest import ledger_at, tasks_run_eagerly

ANONYMOUS = "anonymous"
PATIENT = "patient"
OTHER_PATIENT = "other_patient"
CLINICIAN = "clinician"
OTHER_CLINICIAN = "other_clinician"
AUDITOR = "auditor"
CUSTODIAN = "custodian"
MODEL_STEWARD = "model_steward"
STAFF = "staff"  # is_staff, not a superuser, holding no role
ADMIN = "admin"
NO_ROLE = "no_role"
SIGNED_IN = (
    PATIENT,
    OTHER_PATIENT,
    CLINICIAN,
    OTHER_CLINICIAN,
    AUDITOR,
    CUSTODIAN,
    MODEL_STEWARD,
    STAFF,
    ADMIN,
    NO_ROLE,
)
USERS = (ANONYMOUS, *SIGNED_IN)
PATIENTS = (PATIENT, OTHER_PATIENT)
CLINICIANS = (CLINICIAN, OTHER_CLINICIAN)
ROLE_HOLDERS = (PATIENT, OTHER_PATIENT, CLINICIAN, OTHER_CLINICIAN, AUDITOR, CUSTODIAN, MODEL_STEWARD)
BREAST_CANCER = "diagnostic-model:breast-cancer"
TRAINING_BREAST_CANCER = "training:breast-cancer"
ST_MARYS = "org:matrix-st-marys"
OTHER_STEWARD = "other_steward"  # owns a run; no case signs them in
MISSING_UUID = "00000000-0000-4000-8000-000000000000"


# --- the world -----------------------------------------------------------------------------------


@dataclass
class World:
    users: dict[str, Any]
    record: dict[str, str]  # PATIENT / OTHER_PATIENT -> record id
    consent: dict[str, str]  # PATIENT / OTHER_PATIENT -> consent id (read)
    revocable: dict[str, str]  # "portal" / "api" -> another consent of PATIENT, revoked by the allowed cases
    analysis: dict[str, str]  # CLINICIAN / OTHER_CLINICIAN -> analysis id
    export: dict[str, str]  # AUDITOR / "other_auditor" -> export id
    export_copy: bytes  # the auditor's export file, for /api/audit/verify/
    fhir_consent: dict[str, Any]  # PATIENT's consent as FHIR, for the import
    pseudonym: dict[str, str]
    grantee: dict[str, str]
    admin_ids: dict[str, str] = field(default_factory=dict)
    # The directory's: an organisation to deactivate, a patient with no account yet (its identifier) and a pending
    # invitation of theirs (its id and token).
    directory: dict[str, str] = field(default_factory=dict)
    passkey: dict[str, str] = field(default_factory=dict)  # CLINICIAN / OTHER_CLINICIAN -> WebAuthn authenticator id
    reset_key: str = ""  # a valid password-reset key of OTHER_PATIENT (a bearer secret, as the e-mail carries it)
    email_key: str = ""  # a valid confirmation key of OTHER_PATIENT's unverified e-mail address
    # PATIENT / OTHER_PATIENT -> the hospital identifier (system|value) a clinician declares an emergency by.
    identifier: dict[str, str] = field(default_factory=dict)
    # Emergency declarations: CLINICIAN / OTHER_CLINICIAN -> theirs about the patient who consented to them;
    # REFUSED_CATEGORY -> the clinician's about the directory's patient, who forbids emergency reads of laboratory
    # results; review_key(door, clinician) -> one more for the auditors to review through that door.
    emergency: dict[str, str] = field(default_factory=dict)
    # Misuse alerts: "open" -> one to read; "portal" / "api" -> one for the auditors to triage through that door.
    alert: dict[str, str] = field(default_factory=dict)
    # Training runs (issue 18): MODEL_STEWARD / OTHER_STEWARD -> their run (queued: the matrix tests who may ask).
    training: dict[str, str] = field(default_factory=dict)
    training_run: str = ""  # a completed training run whose training set holds both patients' records


def build_world() -> World:
    """Everything the matrix needs, on the ledger and in the database (committed)."""
    from analytics.registry import diagnostic_models_register
    from analytics.services import analysis_request_create
    from audit.exports import export_path
    from audit.selectors import AccessEventFilters
    from audit.services import audit_export_create
    from consent.fhir import consent_to_fhir
    from health_platform.services import clinician_register, organisation_create
    from records.codes import BREAST_CANCER_DATASET
    from records.crypto import patient_pseudonym
    from records.demo import demo_bundles, demo_patients
    from records.models import Patient, Record
    from records.services import patient_link_user, record_ingest
    from tests.records.factories import UserFactory
    from tests.signing import grant_signed

    users: dict[str, Any] = {
        CUSTODIAN: UserFactory(username="matrix-custodian", roles=[Role.CUSTODIAN]),
        STAFF: UserFactory(username="matrix-staff", is_staff=True),
        AUDITOR: UserFactory(username="matrix-auditor", roles=[Role.AUDITOR]),
        MODEL_STEWARD: UserFactory(username="matrix-model-steward", roles=[Role.MODEL_STEWARD]),
        "other_auditor": UserFactory(username="matrix-other-auditor", roles=[Role.AUDITOR]),
        NO_ROLE: UserFactory(username="matrix-nobody"),
        CLINICIAN: UserFactory(username="matrix-dr-carol"),
        OTHER_CLINICIAN: UserFactory(username="matrix-dr-dave"),
        PATIENT: UserFactory(username="matrix-patient-alice", roles=[Role.PATIENT]),
        OTHER_PATIENT: UserFactory(username="matrix-patient-bob", roles=[Role.PATIENT]),
    }
    users[ADMIN] = get_user_model().objects.create_superuser("matrix-admin", password="a-test-password-not-for-it")
    assert (users[STAFF].is_staff, users[STAFF].is_superuser) == (True, False)
    clinician_register(
        user=users[CLINICIAN],
        display_name="Dr Carol",
        organisation=organisation_create(slug="matrix-st-marys", name="St Mary's"),
    )
    clinician_register(user=users[OTHER_CLINICIAN], display_name="Dr Dave")
    diagnostic_models_register()

    demo = demo_patients(dataset=BREAST_CANCER_DATASET, count=2)
    for document in demo_bundles(patients=demo, max_entries=1000):
        record_ingest(raw_body=json.dumps(document).encode(), actor=users[CUSTODIAN])
    record, pseudonym, identifier = {}, {}, {}
    for who, person in zip(PATIENTS, demo, strict=True):
        patient = Patient.objects.get(pseudonym=patient_pseudonym(person.patient_key))
        patient_link_user(patient=patient, user=users[who])
        users[who].refresh_from_db()
        record[who] = str(Record.objects.get(patient=patient, category="imaging").pk)
        pseudonym[who] = patient.pseudonym
        identifier[who] = person.patient_key

    grantee = {who: users[who].clinician_profile.grantee_id for who in CLINICIANS}
    now = timezone.now()

    def grant(who: str, to: str) -> Any:
        return grant_signed(
            actor=users[who],
            patient=users[who].patient,
            grantee_id=grantee[to],
            purposes=[BREAST_CANCER],
            categories=["imaging"],
            valid_from=now - timedelta(minutes=1),
            valid_until=now + timedelta(days=30),
        )

    consents = {PATIENT: grant(PATIENT, CLINICIAN), OTHER_PATIENT: grant(OTHER_PATIENT, OTHER_CLINICIAN)}
    revocable = {door: grant(PATIENT, CLINICIAN).consent_id for door in ("portal", "api")}

    # The clinician's analysis runs through the real pipeline (in this process): the patient's record is
    # admitted, the other patient's refused. The other clinician's stays queued.
    analysis = {
        CLINICIAN: analysis_request_create(
            requester=users[CLINICIAN],
            model_name="breast-cancer",
            cohort_kind="explicit",
            pseudonyms=[pseudonym[PATIENT], pseudonym[OTHER_PATIENT]],
        )
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("analytics.services._enqueue_start", lambda request_id: None)
        analysis[OTHER_CLINICIAN] = analysis_request_create(
            requester=users[OTHER_CLINICIAN],
            model_name="breast-cancer",
            cohort_kind="explicit",
            pseudonyms=[pseudonym[OTHER_PATIENT]],
        )
    analysis[CLINICIAN].refresh_from_db()
    assert analysis[CLINICIAN].status == "completed", analysis[CLINICIAN].failure_code

    exports = {
        who: audit_export_create(requester=users[who], format="csv", filters=AccessEventFilters())
        for who in (AUDITOR, "other_auditor")
    }
    for export in exports.values():
        export.refresh_from_db()
        assert export.status == "completed", export.failure_code

    directory = build_directory_world(users[CUSTODIAN])
    emergency = build_emergency_world(users, identifier, directory)
    alert = build_alert_world(users)
    training = build_training_world(users, record[PATIENT])
    training_run = build_completed_training_world(users)
    token = Token.objects.create(user=users[PATIENT])
    passkey = {
        who: str(
            Authenticator.objects.create(
                user=users[who],
                type=Authenticator.Type.WEBAUTHN,
                data={"name": f"{who}'s key", "credential": passkey_credential()},
            ).pk
        )
        for who in CLINICIANS
    }
    email_address = EmailAddress.objects.create(
        user=users[OTHER_PATIENT], email="bob@matrix.example", primary=True, verified=False
    )
    reset_key = f"{user_pk_to_url_str(users[OTHER_PATIENT])}-{default_token_generator.make_token(users[OTHER_PATIENT])}"
    admin_ids = {
        "auth/group": str(Group.objects.get(name=Role.PATIENT.value).pk),
        "auth/user": str(users[PATIENT].pk),
        "authtoken/tokenproxy": str(token.user_id),
        "records/patient": str(users[PATIENT].patient.pk),
        "records/record": record[PATIENT],
        "records/recordversion": str(Record.objects.get(pk=record[PATIENT]).versions.first().pk),  # type: ignore[union-attr]
        "content_type": str(ContentType.objects.get_for_model(get_user_model()).pk),
    }
    return World(
        users=users,
        record=record,
        pseudonym=pseudonym,
        grantee=grantee,
        consent={who: consent.consent_id for who, consent in consents.items()},
        revocable=revocable,
        fhir_consent=consent_to_fhir(consents[PATIENT]),
        analysis={who: str(request.pk) for who, request in analysis.items()},
        export={who: str(export.pk) for who, export in exports.items()},
        export_copy=export_path(exports[AUDITOR]).read_bytes(),
        admin_ids=admin_ids,
        directory=directory,
        passkey=passkey,
        reset_key=reset_key,
        email_key=EmailConfirmationHMAC(email_address).key,
        identifier=identifier,
        emergency=emergency,
        alert=alert,
        training=training,
        training_run=training_run,
    )


def build_directory_world(custodian: Any) -> dict[str, str]:
    from directory.services import patient_invitation_issue
    from health_platform.services import clinician_register, organisation_create
    from records.services import record_ingest
    from tests.records.factories import MRN_SYSTEM, UserFactory, bundle, patient_with_observations

    organisation = organisation_create(slug="matrix-north", name="North Clinic")
    # A clinician whose lost second factor the custodian resets (no other case signs them in).
    resettable = clinician_register(user=UserFactory(username="matrix-reset-dr"), display_name="Dr Reset")
    mrn = "MRN-MATRIX-777"
    record_ingest(raw_body=json.dumps(bundle(*patient_with_observations(mrn=mrn))).encode(), actor=custodian)
    issued = patient_invitation_issue(
        actor=custodian, identifier_system=MRN_SYSTEM, identifier_value=mrn, base_url="http://testserver"
    )
    return {
        "organisation": organisation.grantee_id,
        "resettable": resettable.grantee_id,
        "system": MRN_SYSTEM,
        "mrn": mrn,
        "invitation": str(issued.invitation.pk),
        "token": issued.token,
    }


JUSTIFICATION = "Unconscious on arrival, no relative reachable; prior imaging needed."
REFUSED_CATEGORY = "refused category"
DOORS = ("portal", "api")


def review_key(door: str, clinician: str) -> str:
    return f"review through the {door}: {clinician}'s"


def build_emergency_world(
    users: dict[str, Any], identifier: dict[str, str], directory: dict[str, str]
) -> dict[str, str]:
    """Emergency declarations on the ledger (each clinician's about the patient who consented to them, one of the
    clinician's about the directory's patient, who forbids emergency reads of laboratory results) and, per door
    (portal, API), one of each clinician's for the auditors to review: a declaration is reviewed once, on the
    ledger, which the rollback after each test does not undo."""
    from care.emergencies import emergency_declare
    from records.selectors import patient_by_identifier

    def declare(clinician: str, patient_identifier: str) -> str:
        return str(
            emergency_declare(
                clinician=users[clinician],
                identifier=patient_identifier,
                reason="unconscious",
                justification=JUSTIFICATION,
            ).id
        )

    directory_patient = patient_by_identifier(system=directory["system"], value=directory["mrn"])
    assert directory_patient is not None
    bootstrap.contracts().set_emergency_refusals(directory_patient.pseudonym, ["laboratory"])
    treated = {CLINICIAN: PATIENT, OTHER_CLINICIAN: OTHER_PATIENT}
    emergency = {clinician: declare(clinician, identifier[patient]) for clinician, patient in treated.items()}
    emergency[REFUSED_CATEGORY] = declare(CLINICIAN, f"{directory['system']}|{directory['mrn']}")
    for door in DOORS:
        for clinician, patient in treated.items():
            emergency[review_key(door, clinician)] = declare(clinician, identifier[patient])
    return emergency


def build_alert_world(users: dict[str, Any]) -> dict[str, str]:
    """Alerts on the ledger about the clinician: one to read, and one per door (portal, API) for the auditors to
    triage (a triage is on the ledger, which the rollback after each test does not undo)."""
    from tests.oversight.conftest import alerts_raised

    ids = alerts_raised(users[CLINICIAN], ["2026-11-10", "2026-11-11", "2026-11-12"])
    return dict(zip(("open", *DOORS), ids, strict=True))


def build_training_world(users: dict[str, Any], record_id: str) -> dict[str, str]:
    """A run of the model steward's and one of another steward's, both left queued; the patient consents to St Mary's
    training the breast-cancer model, so that St Mary's offers their record to the runs the allowed cases request."""
    from records.models import RecordVersion
    from tests.signing import grant_signed
    from tests.training_world import model_steward
    from training.services import training_run_request

    now = timezone.now()
    grant_signed(
        actor=users[PATIENT],
        patient=users[PATIENT].patient,
        grantee_id=ST_MARYS,
        purposes=[TRAINING_BREAST_CANCER],
        categories=["imaging"],
        valid_from=now - timedelta(minutes=1),
        valid_until=now + timedelta(days=30),
    )
    version = RecordVersion.objects.filter(record_id=record_id).values_list("pk", flat=True).first()
    stewards = {MODEL_STEWARD: users[MODEL_STEWARD], OTHER_STEWARD: model_steward("matrix-other-steward")}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("training.services._enqueue", lambda run_id: None)
        return {
            who: str(
                training_run_request(
                    steward=steward, family="breast-cancer", organisations={ST_MARYS: [version]}, rounds=1
                ).pk
            )
            for who, steward in stewards.items()
        }


def build_completed_training_world(users: dict[str, Any]) -> str:
    """A real federated run (Flower over TLS, CKKS sums, its lineage on the ledger) of the breast-cancer model over
    both patients' imaging records, each consented to training with one organisation."""
    from datetime import timedelta

    from health_platform.services import organisation_create
    from tests.signing import grant_signed
    from tests.training_world import training_run_completed

    trainers = organisation_create(slug="matrix-trainers", name="Matrix Trainers").grantee_id
    for who in PATIENTS:
        grant_signed(
            actor=users[who],
            patient=users[who].patient,
            grantee_id=trainers,
            purposes=["training:breast-cancer"],
            categories=["imaging"],
            valid_from=timezone.now() - timedelta(minutes=1),
            valid_until=timezone.now() + timedelta(days=30),
        )
    offered = [users[who].patient.records.get(category="imaging").versions.get().pk for who in PATIENTS]
    run = training_run_completed(users[MODEL_STEWARD], "breast-cancer", {trainers: offered}, rounds=1)
    assert run.entries.count() == 2
    return str(run.pk)


@pytest.fixture(scope="module")
def world_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("world")


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, world_folder):
    """The world, committed; flushed at the end of the module (as Django's TransactionTestCase does)."""
    with (
        django_db_blocker.unblock(),
        override_settings(
            LEDGER_URL=f"embedded://{world_folder / 'ledger.sqlite3'}",
            ANALYTICS_BLOB_DIR=str(world_folder / "blobs"),
            AUDIT_EXPORT_DIR=str(world_folder / "exports"),
            ANALYTICS_LEDGER_RETRY_BACKOFF_SECONDS=0,
        ),
    ):
        bootstrap.reset_ledger()
        with tasks_run_eagerly():
            built = build_world()
        try:
            yield built
        finally:
            call_command("flush", interactive=False, verbosity=0)
            bootstrap.reset_ledger()


@pytest.fixture(autouse=True)
def ledger_url(world_folder, settings):
    """Every test of the module reads the world's ledger (instead of a fresh empty one)."""
    with ledger_at(settings, f"embedded://{world_folder / 'ledger.sqlite3'}") as url:
        yield url


def sign_in_limits_reset() -> None:
    """Forget the failed sign-ins counted and allauth's rate limits (they share the cache): each user's request is a
    case of its own, not the next attempt of one address (allauth lets one address try 10 passkey sign-ins a
    minute, which the HEAD check of every user crosses now that there are 11)."""
    from django.core.cache import caches

    caches[settings.LOGIN_THROTTLE_CACHE].clear()


@pytest.fixture(autouse=True)
def no_failed_sign_ins_counted():
    """Each case starts with no failed sign-ins counted (the wrong-password cases are sent by every user)."""
    sign_in_limits_reset()


@pytest.fixture(autouse=True)
def nothing_is_queued(monkeypatch):
    """Requests made by the allowed cases stay queued: the matrix tests who may ask, not the pipeline."""
    monkeypatch.setattr("analytics.services._enqueue_start", lambda request_id: None)
    monkeypatch.setattr("training.services._enqueue", lambda run_id: None)


# --- expectations --------------------------------------------------------------------------------

Outcome = int | str
OWNER_CANCELS = "owner-cancels"  # 200 (cancelled now) or 409 analysis_finished: the owner may, and nobody else


def portal(allowed: dict[str, Outcome] | tuple[str, ...], ok: Outcome = 200, refused: Outcome = 403) -> dict:
    """Anonymous → sign in; `allowed` users → `ok` (or their own outcome); every other signed-in user → `refused`
    (the staff member: as the user without a role, see Case)."""
    table = allowed if isinstance(allowed, dict) else dict.fromkeys(allowed, ok)
    return {ANONYMOUS: "login", **{user: table.get(user, refused) for user in SIGNED_IN if user != STAFF}}


def api(allowed: dict[str, Outcome] | tuple[str, ...], ok: Outcome = 200, refused: Outcome = 403) -> dict:
    """Anonymous → 401; `allowed` users → `ok` (or their own outcome); every other signed-in user → `refused`
    (the staff member: as the user without a role, see Case)."""
    table = allowed if isinstance(allowed, dict) else dict.fromkeys(allowed, ok)
    return {ANONYMOUS: 401, **{user: table.get(user, refused) for user in SIGNED_IN if user != STAFF}}


def everyone(outcome: Outcome) -> dict:
    return dict.fromkeys(USERS, outcome)


def admin_only(superuser: Outcome, staff: Outcome, others: Outcome = "admin-login") -> dict:
    """The admin's pages: the superuser → `superuser`; the staff member, whom Django lets into the admin but
    who holds no model permission → `staff`; everyone else is sent to the admin's sign-in."""
    return {**dict.fromkeys(USERS, others), ADMIN: superuser, STAFF: staff}


@dataclass(frozen=True)
class Case:
    route: str  # the URL pattern, as the resolver walk spells it
    method: str
    variant: str  # whose object the URL names
    path: Callable[[World], str]
    expect: dict[str, Outcome]
    body: Callable[[World], dict[str, Any]] | None = None
    content_type: str = "application/json"
    htmx: bool = False
    writes: bool = False  # an allowed user's success changes the world (a grant, an ingest, a request...)
    # Users whose refusal is itself an access event: it changes the access log (ledger and mirror), nothing else.
    logged: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Outside the admin, being staff gives nothing: the staff member gets the answer of a user without a role.
        if not self.route.startswith("admin/") and STAFF not in self.expect:
            object.__setattr__(self, "expect", {**self.expect, STAFF: self.expect[NO_ROLE]})

    @property
    def id(self) -> str:
        return f"{self.method} {self.route or '/'} [{self.variant}]"


def grant_terms(world: World, start: date) -> dict[str, Any]:
    """A valid grant to the clinician: the breast-cancer model over imaging data, from `start` for 30 days."""
    return {
        "grantee": world.grantee[CLINICIAN],
        "purposes": [BREAST_CANCER],
        "categories": ["imaging"],
        "valid_from": start.isoformat(),
        "valid_until": (start + timedelta(days=30)).isoformat(),
    }


def grant_form(world: World) -> dict[str, Any]:
    """What the portal's form posts: days."""
    return grant_terms(world, timezone.localdate())


def grant_body(world: World) -> dict[str, Any]:
    """What the API's signing request takes: instants."""
    return grant_terms(world, timezone.now())


def signed_grant(world: World) -> dict[str, Any]:
    """A grant document of PATIENT's (a new consent id each time), signed by their passkey, as the API takes it."""
    from chaincode.validation import format_timestamp
    from ledger.contracts import ConsentGrant, grant_document
    from tests.signing import passkey_of

    now, patient = timezone.now(), world.users[PATIENT].patient
    grant = ConsentGrant(
        consent_id=f"cns-{uuid.uuid4().hex}",
        grantee=world.grantee[CLINICIAN],
        purposes=[BREAST_CANCER],
        categories=["imaging"],
        valid_from=format_timestamp(now),
        valid_until=format_timestamp(now + timedelta(days=30)),
    )
    document = grant_document(patient.pseudonym, [grant], issued_at=format_timestamp(now))
    return {"document": document, "signature": passkey_of(patient).sign(document)}


def signed_revocation(owner: str | None, consent_of: Callable[[World], str]) -> Callable[[World], dict[str, Any]]:
    """The revocation of a consent, signed by its patient `owner`'s passkey (nothing to sign for no owner)."""

    def body(world: World) -> dict[str, Any]:
        from chaincode.validation import format_timestamp
        from ledger.contracts import revoke_document
        from tests.signing import passkey_of

        if owner is None:
            return {}
        patient = world.users[owner].patient
        document = revoke_document(patient.pseudonym, consent_of(world), issued_at=format_timestamp(timezone.now()))
        return {"document": document, "signature": passkey_of(patient).sign(document)}

    return body


def as_form(body: Callable[[World], dict[str, Any]]) -> Callable[[World], dict[str, Any]]:
    """A signed body as the portal's form posts it: each field JSON."""
    return lambda world: {field: json.dumps(value) for field, value in body(world).items()}


def consent_of(owner: str | None) -> Callable[[World], str]:
    return lambda world: world.consent[owner] if owner else "no-such-consent"


def ingest_bundle(world: World) -> dict[str, Any]:
    from tests.records.factories import bundle, patient_with_observations

    return bundle(*patient_with_observations(mrn=f"MATRIX-{uuid.uuid4().hex[:8]}"))


def ingest_upload(world: World) -> dict[str, Any]:
    """The custodian's upload form: a bundle file."""
    body = json.dumps(ingest_bundle(world)).encode()
    return {"bundle": SimpleUploadedFile("bundle.json", body, content_type="application/fhir+json")}


def analysis_body(world: World) -> dict[str, Any]:
    return {"model": "breast-cancer", "cohort": {"kind": "explicit", "pseudonyms": [world.pseudonym[PATIENT]]}}


def analysis_form(world: World) -> dict[str, Any]:
    return {"model": "breast-cancer", "cohort_kind": "explicit", "pseudonyms": world.pseudonym[PATIENT]}


def verify_upload(world: World) -> dict[str, Any]:
    return {"format": "csv", "file": SimpleUploadedFile("copy.csv", world.export_copy, content_type="text/csv")}


OWN_RECORD = {PATIENT: 200, OTHER_PATIENT: 404}
AUDIT_READERS = (AUDITOR,)
RECORD_METADATA = (AUDITOR, CUSTODIAN, ADMIN)
INGESTERS = (CUSTODIAN, ADMIN)  # records.access.user_may_ingest_records


def records_api(variant_owner: str | None) -> dict:
    """/api/records/<id>/...: the owner and the metadata readers 200; the other patient and a missing id 404."""
    allowed: dict[str, Outcome] = dict.fromkeys(PATIENTS, 404)
    allowed.update(dict.fromkeys(RECORD_METADATA, 200 if variant_owner else 404))
    if variant_owner:
        allowed[variant_owner] = 200
    return api(allowed)


def consent_api(variant_owner: str | None) -> dict:
    """/api/consents/<id>/...: its patient and the clinician it names 200, auditors all; other readers 404."""
    allowed: dict[str, Outcome] = dict.fromkeys((*PATIENTS, *CLINICIANS), 404)
    allowed[AUDITOR] = 200 if variant_owner else 404
    if variant_owner:
        allowed[variant_owner] = 200
        allowed[CLINICIAN if variant_owner == PATIENT else OTHER_CLINICIAN] = 200
    return api(allowed)


def own_consent_page(owner: str | None, ok: Outcome = 200) -> dict:
    """/consent/<id>/...: its patient `ok`; another patient 404, as for a consent that does not exist; other roles
    403 (the consent pages are the patients')."""
    return portal({who: ok if who == owner else 404 for who in PATIENTS})


def own_analysis(owner: str | None, ok: Outcome = 200) -> dict[str, Outcome]:
    return {who: ok if who == owner else 404 for who in CLINICIANS}


def exports_of_auditors(exists: bool, ok: Outcome = 200) -> dict[str, Outcome]:
    return {AUDITOR: ok if exists else 404}


def record_path(owner: str | None, suffix: str = "", api_: bool = True) -> Callable[[World], str]:
    def path(world: World) -> str:
        record_id = world.record[owner] if owner else MISSING_UUID
        return f"/api/records/{record_id}/{suffix}" if api_ else f"/records/{record_id}/"

    return path


def consent_path(prefix: str, owner: str | None, suffix: str = "") -> Callable[[World], str]:
    return lambda world: f"{prefix}{world.consent[owner] if owner else 'no-such-consent'}/{suffix}"


def analysis_path(prefix: str, owner: str | None, suffix: str = "") -> Callable[[World], str]:
    return lambda world: f"{prefix}{world.analysis[owner] if owner else MISSING_UUID}/{suffix}"


def training_path(prefix: str, owner: str | None, suffix: str = "") -> Callable[[World], str]:
    return lambda world: f"{prefix}{world.training[owner] if owner else MISSING_UUID}/{suffix}"


def own_run(owner: str | None) -> dict[str, Outcome]:
    return {MODEL_STEWARD: 200 if owner == MODEL_STEWARD else 404}


def export_path(prefix: str, owner: str | None, suffix: str = "") -> Callable[[World], str]:
    return lambda world: f"{prefix}{world.export[owner] if owner else MISSING_UUID}/{suffix}"


def treatment_read_path(url: str, owner: str | None) -> Callable[[World], str]:
    return lambda world: url.format(world.pseudonym[owner] if owner else "0" * 64)


def training_proof_path(url: str, owner: str | None) -> Callable[[World], str]:
    return lambda world: url.format(world.training_run, world.record[owner] if owner else MISSING_UUID)


def own_or_missing(owner: str | None) -> dict[str, Outcome]:
    """The patient `owner` 200; the other patient (and both, for no owner) 404."""
    return {who: 200 if who == owner else 404 for who in PATIENTS}


def fixed(path: str) -> Callable[[World], str]:
    return lambda world: path


OWNERS = {"own": PATIENT, "other patient's": OTHER_PATIENT, "missing": None}
CLINICIAN_OWNERS = {"clinician's": CLINICIAN, "other clinician's": OTHER_CLINICIAN, "missing": None}
EXPORT_OWNERS = {"auditor's": AUDITOR, "other auditor's": "other_auditor", "missing": None}
STEWARD_OWNERS = {"steward's": MODEL_STEWARD, "other steward's": OTHER_STEWARD, "missing": None}


# --- care: emergency access (break-the-glass) ---

EMERGENCY_VARIANTS = {"clinician's": CLINICIAN, "other clinician's": OTHER_CLINICIAN, "missing": None}
EMERGENCY_PATIENT = {CLINICIAN: PATIENT, OTHER_CLINICIAN: OTHER_PATIENT}
EMERGENCY_READERS = (*PATIENTS, *CLINICIANS, AUDITOR)  # their own, the ones about them, every one


def emergency_path(url: str, key: str | None) -> Callable[[World], str]:
    return lambda world: url.format(world.emergency[key] if key else MISSING_UUID)


def declare_body(world: World) -> dict[str, Any]:
    return {"identifier": world.identifier[PATIENT], "reason": "unconscious", "justification": JUSTIFICATION}


def review_body(world: World) -> dict[str, Any]:
    return {"verdict": "justified", "note": "Checked with the ward: the patient arrived unconscious."}


def refusals_body(world: World) -> dict[str, Any]:
    """A category neither patient has records in: the emergency reads of their imaging stay open, whichever case
    ran first (the ledger keeps what a case wrote)."""
    return {"categories": ["social-history"]}


def emergency_seen(owner: str | None) -> dict[str, Outcome]:
    """/api/care/emergencies/<id>/: its clinician, its patient and the auditors 200; the other clinicians and patients
    404, as for a declaration that does not exist; the roles that see no declaration at all (the custodian, the admin,
    the user without a role) 403, as the list answers them."""
    hidden = dict.fromkeys((*CLINICIANS, *PATIENTS, AUDITOR), 404)
    return hidden if owner is None else {**hidden, owner: 200, EMERGENCY_PATIENT[owner]: 200, AUDITOR: 200}


def emergency_read(owner: str | None, ok: Outcome = 200) -> dict[str, Outcome]:
    """A read under a declaration: its clinician `ok`; the other clinician 404, as for a declaration that does not
    exist; everyone else 403 (only clinicians read under a declaration)."""
    return {who: ok if who == owner else 404 for who in CLINICIANS}


def emergency_page(owner: str | None) -> dict[str, Outcome]:
    """/care/emergencies/<id>/: its clinician and the auditors 200; the other clinician 404; other roles 403."""
    return {**emergency_read(owner), AUDITOR: 200 if owner else 404}


def emergency_cases() -> list[Case]:
    """Declaring an emergency (clinicians), what was declared (its clinician, its patient, the auditors), the reads
    under it (its clinician only: gated and logged on the ledger, admitted or refused), its review (auditors) and
    the patient's refusal of emergency access (patients)."""
    records = (
        ("care/emergencies/<str:declaration_id>/<str:category>/", portal, "/care/emergencies/{}/"),
        ("api/care/emergencies/<str:declaration_id>/records/", api, "/api/care/emergencies/{}/records/?category="),
    )
    reviews = (
        ("portal", "care/emergencies/<str:declaration_id>/review/", portal, "/care/emergencies/{}/review/", 302),
        ("api", "api/care/emergencies/<str:declaration_id>/review/", api, "/api/care/emergencies/{}/review/", 200),
    )
    return [
        Case("api/care/emergencies/", "GET", "-", fixed("/api/care/emergencies/"), api(EMERGENCY_READERS)),
        Case(
            "api/care/emergencies/",
            "POST",
            "-",
            fixed("/api/care/emergencies/"),
            api(CLINICIANS, ok=201),
            body=declare_body,
            writes=True,
        ),
        Case("care/emergencies/", "GET", "-", fixed("/care/emergencies/"), portal(CLINICIANS)),
        Case(
            "care/emergencies/",
            "POST",
            "-",
            fixed("/care/emergencies/"),
            portal(CLINICIANS, ok=302),
            body=declare_body,
            content_type="form",
            writes=True,
        ),
        Case("care/emergencies/review/", "GET", "-", fixed("/care/emergencies/review/"), portal(AUDIT_READERS)),
        *(
            Case(
                "api/care/emergencies/<str:declaration_id>/",
                "GET",
                variant,
                emergency_path("/api/care/emergencies/{}/", owner),
                api(emergency_seen(owner)),
            )
            for variant, owner in EMERGENCY_VARIANTS.items()
        ),
        *(
            Case(
                "care/emergencies/<str:declaration_id>/",
                "GET",
                variant,
                emergency_path("/care/emergencies/{}/", owner),
                portal(emergency_page(owner)),
            )
            for variant, owner in EMERGENCY_VARIANTS.items()
        ),
        # A read is a write: the ledger gates each record and logs its decision, admitted or refused. The
        # directory's patient forbids emergency reads of laboratory results: their clinician is refused (403
        # emergency_refused), and that refusal is logged too.
        *(
            Case(
                route,
                "GET",
                variant,
                lambda world, url=url, key=key, category=category: (
                    emergency_path(url, key)(world) + (category if "?" in url else f"{category}/")
                ),
                table(emergency_read(owner, ok=ok)),
                logged=(owner,) if owner else (),
            )
            for route, table, url in records
            for variant, key, owner, category, ok in (
                *((v, o, o, "imaging", 200) for v, o in EMERGENCY_VARIANTS.items()),
                ("clinician's, category refused", REFUSED_CATEGORY, CLINICIAN, "laboratory", 403),
            )
        ),
        # A declaration is reviewed once, on the ledger: each door reviews declarations of its own.
        *(
            Case(
                route,
                "POST",
                variant,
                emergency_path(url, review_key(door, owner) if owner else None),
                table({AUDITOR: ok if owner else 404}),
                body=review_body,
                content_type="form" if door == "portal" else "application/json",
                writes=owner is not None,
            )
            for door, route, table, url, ok in reviews
            for variant, owner in EMERGENCY_VARIANTS.items()
        ),
        Case("api/care/emergency-refusals/", "GET", "-", fixed("/api/care/emergency-refusals/"), api(PATIENTS)),
        Case(
            "api/care/emergency-refusals/",
            "PUT",
            "own",
            fixed("/api/care/emergency-refusals/"),
            api(PATIENTS),
            body=refusals_body,
            writes=True,
        ),
        Case("care/my-emergency-access/", "GET", "-", fixed("/care/my-emergency-access/"), portal(PATIENTS)),
        Case(
            "care/my-emergency-access/",
            "POST",
            "own",
            fixed("/care/my-emergency-access/"),
            portal(PATIENTS, ok=302),
            body=refusals_body,
            content_type="form",
            writes=True,
        ),
    ]


ALERT_VARIANTS = {"an alert": "open", "missing": None}


def alert_path(url: str, key: str | None) -> Callable[[World], str]:
    return lambda world: url.format(world.alert[key] if key else MISSING_UUID)


def triage_body(world: World) -> dict[str, Any]:
    return {"verdict": "dismissed", "note": "On call that night."}


def oversight_cases() -> list[Case]:
    """The misuse alerts: auditors only, for reading, triage and scoring on demand; everyone else 403, before any
    alert is looked up (so the id of one is never confirmed)."""
    triages = (
        ("portal", "oversight/alerts/<str:alert_id>/triage/", portal, "/oversight/alerts/{}/triage/", 302),
        ("api", "api/oversight/alerts/<str:alert_id>/triage/", api, "/api/oversight/alerts/{}/triage/", 200),
    )
    return [
        Case("oversight/alerts/", "GET", "-", fixed("/oversight/alerts/"), portal(AUDIT_READERS)),
        Case("api/oversight/alerts/", "GET", "-", fixed("/api/oversight/alerts/"), api(AUDIT_READERS)),
        *(
            Case(route, "GET", variant, alert_path(url, key), table({AUDITOR: 200 if key else 404}))
            for route, table, url in (
                ("oversight/alerts/<str:alert_id>/", portal, "/oversight/alerts/{}/"),
                ("api/oversight/alerts/<str:alert_id>/", api, "/api/oversight/alerts/{}/"),
            )
            for variant, key in ALERT_VARIANTS.items()
        ),
        *(
            Case(
                route,
                "POST",
                variant,
                alert_path(url, door if key else None),
                table({AUDITOR: ok if key else 404}),
                body=triage_body,
                content_type="form" if door == "portal" else "application/json",
                writes=key is not None,
            )
            for door, route, table, url, ok in triages
            for variant, key in ALERT_VARIANTS.items()
        ),
        Case(
            "oversight/alerts/score/",
            "POST",
            "-",
            fixed("/oversight/alerts/score/"),
            portal(AUDIT_READERS, ok=302),
            content_type="form",
            writes=True,
        ),
        Case(
            "api/oversight/scoring-runs/",
            "POST",
            "-",
            fixed("/api/oversight/scoring-runs/"),
            api(AUDIT_READERS, ok=202),
            writes=True,
        ),
    ]


def build_cases() -> list[Case]:
    cases = [
        # --- portal: entry and sign-in ---
        Case(
            "",
            "GET",
            "-",
            fixed("/"),
            {
                ANONYMOUS: "login",
                **dict.fromkeys(PATIENTS, 302),
                **dict.fromkeys(CLINICIANS, 302),
                CUSTODIAN: 302,  # to the upload page (issue 14)
                AUDITOR: 302,  # to the state of the access log (issue 14)
                MODEL_STEWARD: 302,  # to their training runs (issue 18)
                **dict.fromkeys((ADMIN, NO_ROLE), 200),  # the page of links
            },
        ),
        Case("accounts/login/", "GET", "-", fixed("/accounts/login/"), everyone(200)),
        Case(
            "accounts/login/",
            "POST",
            "wrong password",
            fixed("/accounts/login/"),
            everyone(200),
            body=lambda world: {"username": "matrix-patient-alice", "password": "not-the-password"},
            content_type="form",
        ),
        # A GET asks to confirm (allauth's page); only the POST signs out.
        Case("accounts/logout/", "GET", "-", fixed("/accounts/logout/"), {**everyone(200), ANONYMOUS: "login"}),
        Case(
            "accounts/logout/",
            "POST",
            "-",
            fixed("/accounts/logout/"),
            everyone(302),
            body=lambda world: {},
            content_type="form",
        ),
        # --- portal: records ---
        Case("records/", "GET", "-", fixed("/records/"), portal(PATIENTS)),
        *(
            Case(
                "records/<uuid:record_id>/",
                "GET",
                variant,
                record_path(owner, api_=False),
                portal(
                    {PATIENT: 200 if owner == PATIENT else 404, OTHER_PATIENT: 200 if owner == OTHER_PATIENT else 404}
                ),
            )
            for variant, owner in OWNERS.items()
        ),
        # --- portal: the patient's erasure (issue 19) ---
        # The POST is sent unconfirmed: a patient's erasure would mark their anchors erased on the world's ledger,
        # which the rollback after each test does not undo. Every role but the patient is refused (403) before the
        # confirmation is read, so the patients' 400 cannot hide a refusal; the erasure itself: test_erasure.py.
        Case("records/erasure/", "GET", "-", fixed("/records/erasure/"), portal(PATIENTS)),
        Case(
            "records/erasure/",
            "POST",
            "own",
            fixed("/records/erasure/"),
            portal(PATIENTS, ok=400),
            body=lambda world: {"confirm": "no"},
            content_type="form",
        ),
        Case(
            "records/erasure/receipt.json",
            "GET",
            "own",
            fixed("/records/erasure/receipt.json"),
            portal(PATIENTS, ok=404),
        ),
        # --- portal: the custodian's ingest (issue 14) ---
        Case("records/ingest/", "GET", "-", fixed("/records/ingest/"), portal(INGESTERS)),
        Case(
            "records/ingest/",
            "POST",
            "-",
            fixed("/records/ingest/"),
            portal(INGESTERS),
            body=ingest_upload,
            content_type="multipart",
            writes=True,
        ),
        Case("records/ingest/history/", "GET", "-", fixed("/records/ingest/history/"), portal(INGESTERS)),
        # --- portal: consent ---
        Case("consent/", "GET", "-", fixed("/consent/"), portal(PATIENTS)),
        Case(  # the terms: the page to sign them on, nothing written yet
            "consent/grant/",
            "POST",
            "own",
            fixed("/consent/grant/"),
            portal(PATIENTS),
            body=grant_form,
            content_type="form",
        ),
        Case(  # PATIENT's signed grant: another patient cannot submit it (403)
            "consent/grant/",
            "POST",
            "signed",
            fixed("/consent/grant/"),
            portal({PATIENT: 302, OTHER_PATIENT: 403}),
            body=as_form(signed_grant),
            content_type="form",
            writes=True,
        ),
        Case("consent/passkeys/", "GET", "-", fixed("/consent/passkeys/"), portal(PATIENTS)),
        Case("consent/passkeys/reset/", "GET", "-", fixed("/consent/passkeys/reset/"), portal((CUSTODIAN,))),
        Case(  # incomplete: refused (400), nothing written; the reset itself: tests/consent/test_passkeys.py
            "consent/passkeys/reset/",
            "POST",
            "-",
            fixed("/consent/passkeys/reset/"),
            portal((CUSTODIAN,), ok=400),
            body=lambda world: {"identifier_system": "urn:x"},
            content_type="form",
        ),
        Case(  # nothing signed: refused, nothing written
            "consent/passkeys/signed/",
            "POST",
            "-",
            fixed("/consent/passkeys/signed/"),
            portal(PATIENTS, ok=400),
            body=lambda world: {},
            content_type="form",
        ),
        *(
            Case(  # no such passkey on the patient's account (a clinician's, or none): refused, nothing written
                "consent/passkeys/<int:authenticator_id>/enrol/",
                "POST",
                variant,
                path,
                portal(PATIENTS, ok=400),
                body=lambda world: {},
                content_type="form",
            )
            for variant, path in (
                ("other clinician's", lambda world: f"/consent/passkeys/{world.passkey[CLINICIAN]}/enrol/"),
                ("missing", fixed("/consent/passkeys/999999/enrol/")),
            )
        ),
        Case("consent/granted-to-me/", "GET", "-", fixed("/consent/granted-to-me/"), portal(CLINICIANS)),
        *(
            Case(
                "consent/<str:consent_id>/",
                "GET",
                variant,
                consent_path("/consent/", owner),
                own_consent_page(owner),
            )
            for variant, owner in OWNERS.items()
        ),
        *(
            Case(
                "consent/<str:consent_id>/revoke/",
                "GET",
                variant,
                consent_path("/consent/", owner, "revoke/"),
                own_consent_page(owner),
            )
            for variant, owner in OWNERS.items()
        ),
        Case(
            "consent/<str:consent_id>/revoke/",
            "POST",
            "own",
            lambda world: f"/consent/{world.revocable['portal']}/revoke/",
            own_consent_page(PATIENT, ok=302),
            body=as_form(signed_revocation(PATIENT, lambda world: world.revocable["portal"])),
            content_type="form",
            writes=True,
        ),
        *(
            Case(
                "consent/<str:consent_id>/revoke/",
                "POST",
                variant,
                consent_path("/consent/", owner, "revoke/"),
                own_consent_page(owner, ok=302),
                body=as_form(signed_revocation(owner, consent_of(owner))),
                content_type="form",
                writes=True,
            )
            for variant, owner in (("other patient's", OTHER_PATIENT), ("missing", None))
        ),
        # --- portal: analytics ---
        Case("analytics/", "GET", "-", fixed("/analytics/"), portal(CLINICIANS)),
        Case("analytics/new/", "GET", "-", fixed("/analytics/new/"), portal(CLINICIANS)),
        Case(
            "analytics/new/",
            "POST",
            "-",
            fixed("/analytics/new/"),
            portal(CLINICIANS, ok=302),
            body=analysis_form,
            content_type="form",
            writes=True,
        ),
        Case(
            "analytics/models/<str:name>/",
            "GET",
            "existing",
            fixed("/analytics/models/breast-cancer/"),
            portal(ROLE_HOLDERS),
        ),
        Case(
            "analytics/models/<str:name>/",
            "GET",
            "missing",
            fixed("/analytics/models/no-such-model/"),
            portal(ROLE_HOLDERS, ok=404),
        ),
        *(
            Case(
                f"analytics/<str:analysis_id>/{suffix}",
                "GET",
                variant,
                analysis_path("/analytics/", owner, suffix),
                portal(own_analysis(owner)),
                htmx=bool(suffix),
            )
            for suffix in ("", "progress/", "results/")
            for variant, owner in CLINICIAN_OWNERS.items()
        ),
        *(  # the owner is sent back to the analysis's page, which says what became of it
            Case(
                "analytics/<str:analysis_id>/cancel/",
                "POST",
                variant,
                analysis_path("/analytics/", owner, "cancel/"),
                portal(own_analysis(owner, ok=302)),
                body=lambda world: {},
                writes=True,
            )
            for variant, owner in CLINICIAN_OWNERS.items()
        ),
        # --- portal: the model steward's training runs (issue 18) ---
        Case("training/", "GET", "-", fixed("/training/"), portal((MODEL_STEWARD,))),
        Case("training/new/", "GET", "-", fixed("/training/new/"), portal((MODEL_STEWARD,))),
        Case(
            "training/new/",
            "POST",
            "-",
            fixed("/training/new/"),
            portal((MODEL_STEWARD,), ok=302),
            body=lambda world: {"family": "breast-cancer", "rounds": "1"},
            content_type="form",
            writes=True,
        ),
        *(
            Case(
                f"training/<str:run_id>/{suffix}",
                "GET",
                variant,
                training_path("/training/", owner, suffix),
                portal(own_run(owner)),
                htmx=bool(suffix),
            )
            for suffix in ("", "progress/")
            for variant, owner in STEWARD_OWNERS.items()
        ),
        # --- portal: audit ---
        Case("audit/", "GET", "-", fixed("/audit/"), portal(AUDIT_READERS)),
        Case("audit/exports/", "GET", "-", fixed("/audit/exports/"), portal(AUDIT_READERS)),
        Case(
            "audit/exports/",
            "POST",
            "-",
            fixed("/audit/exports/"),
            portal(AUDIT_READERS, ok=302),
            body=lambda world: {"format": "json"},
            content_type="form",
            writes=True,
        ),
        *(
            Case(
                f"audit/exports/<str:export_id>/{suffix}",
                "GET",
                variant,
                export_path("/audit/exports/", owner, suffix),
                portal(exports_of_auditors(owner is not None)),
                htmx=suffix == "row/",
            )
            for suffix in ("row/", "download/", "manifest/")
            for variant, owner in EXPORT_OWNERS.items()
        ),
        Case("audit/ledger/", "GET", "-", fixed("/audit/ledger/"), portal(AUDIT_READERS)),
        Case("audit/overview/", "GET", "-", fixed("/audit/overview/"), portal(AUDIT_READERS)),
        Case(  # verifying a copy reads the ledger and writes nothing
            "audit/verify/",
            "POST",
            "-",
            fixed("/audit/verify/"),
            portal(AUDIT_READERS),
            body=verify_upload,
            content_type="multipart",
        ),
        Case("audit/my-data/", "GET", "-", fixed("/audit/my-data/"), portal(PATIENTS)),
        # --- the patient's "Models my records trained" (issue 18): the proof of their own record; another patient's
        # record, or one no run used, 404 as if it did not exist; every other role 403 ---
        Case("training/my-models/", "GET", "-", fixed("/training/my-models/"), portal(PATIENTS)),
        Case("api/training/my-models/", "GET", "-", fixed("/api/training/my-models/"), api(PATIENTS)),
        *(
            Case(route, "GET", variant, training_proof_path(url, owner), table(own_or_missing(owner)))
            for route, table, url in (
                (
                    "training/my-models/<uuid:run_id>/<uuid:record_id>/proof.json",
                    portal,
                    "/training/my-models/{}/{}/proof.json",
                ),
                (
                    "api/training/my-models/<uuid:run_id>/<uuid:record_id>/proof/",
                    api,
                    "/api/training/my-models/{}/{}/proof/",
                ),
            )
            for variant, owner in OWNERS.items()
        ),
        # The patient's download of their own data: a file, logged on the ledger (a write), for patients only.
        Case(
            "audit/my-data/download/",
            "POST",
            "-",
            fixed("/audit/my-data/download/"),
            portal(PATIENTS),
            body=lambda world: {},
            content_type="form",
            writes=True,
        ),
        # --- care: reads for treatment. The world's consents are for an analysis, not treatment: the clinician
        # they name is refused by the ledger (403 no_consent, logged); a clinician they do not name, and any
        # pseudonym no consent names, 404; everyone else 403. The patient consented to the clinician, the other
        # patient to the other clinician ---
        *(
            Case(
                route,
                "GET",
                variant,
                path,
                table({who: 403 if who == reader else 404 for who in (CLINICIAN, OTHER_CLINICIAN)}),
                logged=(reader,) if reader else (),
            )
            for route, table, url in (
                ("care/patients/<str:pseudonym>/<str:category>/", portal, "/care/patients/{}/imaging/"),
                ("api/care/patients/<str:pseudonym>/records/", api, "/api/care/patients/{}/records/?category=imaging"),
            )
            for variant, owner, reader in (
                ("patient's", PATIENT, CLINICIAN),
                ("other patient's", OTHER_PATIENT, OTHER_CLINICIAN),
                ("missing", None, None),
            )
            for path in [treatment_read_path(url, owner)]
        ),
        *emergency_cases(),
        *oversight_cases(),
        # --- API: sign-in, schema ---
        Case(
            "api/auth/token/",
            "POST",
            "wrong password",
            fixed("/api/auth/token/"),
            everyone(400),
            body=lambda world: {"username": "matrix-patient-bob", "password": "not-the-password"},
        ),
        Case("api/schema/", "GET", "-", fixed("/api/schema/"), everyone(200)),
        # --- the FHIR API: the API's rules, its errors OperationOutcomes; metadata is anyone's ---
        Case("fhir/metadata", "GET", "-", fixed("/fhir/metadata"), everyone(200)),
        Case("fhir/Consent", "GET", "-", fixed("/fhir/Consent"), api((*PATIENTS, *CLINICIANS, AUDITOR))),
        *(
            Case(
                "fhir/Consent/<str:consent_id>",
                "GET",
                variant,
                lambda world, owner=owner: f"/fhir/Consent/{world.consent[owner] if owner else 'no-such-consent'}",
                consent_api(owner),
            )
            for variant, owner in OWNERS.items()
        ),
        Case("fhir/AuditEvent", "GET", "-", fixed("/fhir/AuditEvent"), api((*PATIENTS, AUDITOR))),
        *(
            Case(
                "fhir/Patient/<str:pseudonym>/$everything",
                "GET",
                variant,
                lambda world, owner=owner: f"/fhir/Patient/{world.pseudonym[owner] if owner else '0' * 64}/$everything",
                api({who: 200 if who == owner else 404 for who in PATIENTS}),
            )
            for variant, owner in OWNERS.items()
        ),
        *(
            Case(
                "fhir/Patient/<str:pseudonym>/$download",
                "GET",
                variant,
                lambda world, owner=owner: f"/fhir/Patient/{world.pseudonym[owner] if owner else '0' * 64}/$download",
                api({who: 200 if who == owner else 404 for who in PATIENTS}),
                writes=True,  # the download is logged on the ledger
            )
            for variant, owner in OWNERS.items()
        ),
        # Any other path under /fhir/, whatever the method and whoever asks.
        Case("fhir/^.*$", "GET", "-", fixed("/fhir/Observation"), everyone(404)),
        Case("api/docs/", "GET", "-", fixed("/api/docs/"), everyone(200)),
        # --- API: records ---
        Case("api/records/^$", "GET", "-", fixed("/api/records/"), api((*PATIENTS, *RECORD_METADATA))),
        Case(
            "api/records/^$",
            "POST",
            "-",
            fixed("/api/records/"),
            api((CUSTODIAN, ADMIN), ok=201),
            body=ingest_bundle,
            content_type="application/fhir+json",
            writes=True,
        ),
        *(
            Case(
                f"api/records/^(?P<pk>[^/.]+)/{suffix}$", "GET", variant, record_path(owner, suffix), records_api(owner)
            )
            for suffix in ("", "integrity/")
            for variant, owner in OWNERS.items()
        ),
        # --- API: the patient's erasure (issue 19; sent unconfirmed, as in the portal) ---
        Case("api/records/erasure/", "GET", "own", fixed("/api/records/erasure/"), api(PATIENTS, ok=404)),
        Case(
            "api/records/erasure/",
            "POST",
            "own",
            fixed("/api/records/erasure/"),
            api(PATIENTS, ok=400),
            body=lambda world: {"confirm": "no"},
        ),
        Case("api/records/erasure/verify/", "GET", "own", fixed("/api/records/erasure/verify/"), api(PATIENTS, ok=404)),
        # --- API: consents ---
        Case("api/consents/^$", "GET", "-", fixed("/api/consents/"), api((*PATIENTS, *CLINICIANS, AUDITOR))),
        Case(
            "api/consents/^$",
            "POST",
            "own",
            fixed("/api/consents/"),
            api({PATIENT: 201, OTHER_PATIENT: 403}),
            body=signed_grant,
            writes=True,
        ),
        Case(
            "api/consents/^sign-request/$",
            "POST",
            "-",
            fixed("/api/consents/sign-request/"),
            api(PATIENTS),
            body=grant_body,
        ),
        Case(  # the grant document to sign: nothing written yet
            "api/consents/^fhir/$",
            "POST",
            "own",
            fixed("/api/consents/fhir/"),
            api({PATIENT: 200, OTHER_PATIENT: 403}),
            body=lambda world: world.fhir_consent,
        ),
        *(
            Case(
                f"api/consents/^(?P<consent_id>[A-Za-z0-9][A-Za-z0-9._:-]{{0,127}})/{suffix}$",
                "GET",
                variant,
                consent_path("/api/consents/", owner, suffix),
                consent_api(owner),
            )
            for suffix in ("", "fhir/", "history/")
            for variant, owner in OWNERS.items()
        ),
        Case(
            "api/consents/^(?P<consent_id>[A-Za-z0-9][A-Za-z0-9._:-]{0,127})/revoke/$",
            "POST",
            "own",
            lambda world: f"/api/consents/{world.revocable['api']}/revoke/",
            api({PATIENT: 200, OTHER_PATIENT: 404}),
            body=signed_revocation(PATIENT, lambda world: world.revocable["api"]),
            writes=True,
        ),
        *(
            Case(
                "api/consents/^(?P<consent_id>[A-Za-z0-9][A-Za-z0-9._:-]{0,127})/revoke/sign-request/$",
                "POST",
                variant,
                consent_path("/api/consents/", owner, "revoke/sign-request/"),
                api({who: 200 if who == owner else 404 for who in PATIENTS}),
                body=lambda world: {},
            )
            for variant, owner in OWNERS.items()
        ),
        *(
            Case(
                "api/consents/^(?P<consent_id>[A-Za-z0-9][A-Za-z0-9._:-]{0,127})/revoke/$",
                "POST",
                variant,
                consent_path("/api/consents/", owner, "revoke/"),
                api({PATIENT: 404, OTHER_PATIENT: 404 if owner is None else 200}),
                body=signed_revocation(owner, consent_of(owner)),
                writes=True,
            )
            for variant, owner in (("other patient's", OTHER_PATIENT), ("missing", None))
        ),
        Case("api/grantees/", "GET", "-", fixed("/api/grantees/"), api(PATIENTS)),
        # --- API: analyses and models ---
        Case("api/analyses/^$", "GET", "-", fixed("/api/analyses/"), api(CLINICIANS)),
        Case(
            "api/analyses/^$",
            "POST",
            "-",
            fixed("/api/analyses/"),
            api(CLINICIANS, ok=201),
            body=analysis_body,
            writes=True,
        ),
        *(
            Case(
                f"api/analyses/^(?P<pk>[0-9A-Fa-f-]{{32,36}})/{suffix}$",
                "GET",
                variant,
                analysis_path("/api/analyses/", owner, suffix),
                api(own_analysis(owner)),
            )
            for suffix in ("", "encrypted-scores/", "results/")
            for variant, owner in CLINICIAN_OWNERS.items()
        ),
        *(  # the owner cancels it (200), or it has finished, the other clinician's perhaps by an earlier case (409)
            Case(
                "api/analyses/^(?P<pk>[0-9A-Fa-f-]{32,36})/cancel/$",
                "POST",
                variant,
                analysis_path("/api/analyses/", owner, "cancel/"),
                api(own_analysis(owner, ok=OWNER_CANCELS)),
                body=lambda world: {},
                writes=True,
            )
            for variant, owner in CLINICIAN_OWNERS.items()
        ),
        Case("api/models/^$", "GET", "-", fixed("/api/models/"), api(ROLE_HOLDERS)),
        Case(
            "api/models/^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,63})/$",
            "GET",
            "existing",
            fixed("/api/models/breast-cancer/"),
            api(ROLE_HOLDERS),
        ),
        Case(
            "api/models/^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,63})/$",
            "GET",
            "missing",
            fixed("/api/models/no-such-model/"),
            api(ROLE_HOLDERS, ok=404),
        ),
        # --- API: training runs (issue 18) ---
        Case("api/training/^runs/$", "GET", "-", fixed("/api/training/runs/"), api((MODEL_STEWARD,))),
        Case(
            "api/training/^runs/$",
            "POST",
            "-",
            fixed("/api/training/runs/"),
            api((MODEL_STEWARD,), ok=201),
            body=lambda world: {"family": "breast-cancer", "rounds": 1},
            writes=True,
        ),
        *(
            Case(
                "api/training/^runs/(?P<pk>[0-9A-Fa-f-]{32,36})/$",
                "GET",
                variant,
                training_path("/api/training/runs/", owner),
                api(own_run(owner)),
            )
            for variant, owner in STEWARD_OWNERS.items()
        ),
        # --- API between platform instances (issue 18): a peer instance's signature only, never a user ---
        Case(
            "api/training/federation/invitations/",
            "POST",
            "-",
            fixed("/api/training/federation/invitations/"),
            everyone(401),
            body=lambda world: {"run_id": MISSING_UUID, "attempt": 0},
        ),
        Case(
            "api/training/federation/invitations/<uuid:run_id>/<int:attempt>/",
            "GET",
            "missing",
            fixed(f"/api/training/federation/invitations/{MISSING_UUID}/0/"),
            everyone(401),
        ),
        # --- API: audit ---
        Case("api/audit/^events/$", "GET", "-", fixed("/api/audit/events/"), api((AUDITOR, *PATIENTS))),
        Case("api/audit/^exports/$", "GET", "-", fixed("/api/audit/exports/"), api(AUDIT_READERS)),
        Case(
            "api/audit/^exports/$",
            "POST",
            "-",
            fixed("/api/audit/exports/"),
            api(AUDIT_READERS, ok=202),
            body=lambda world: {"format": "fhir"},
            writes=True,
        ),
        *(
            Case(
                f"api/audit/^exports/(?P<pk>[0-9A-Fa-f-]{{32,36}})/{suffix}$",
                "GET",
                variant,
                export_path("/api/audit/exports/", owner, suffix),
                api(exports_of_auditors(owner is not None)),
            )
            for suffix in ("", "file/", "manifest/")
            for variant, owner in EXPORT_OWNERS.items()
        ),
        Case(
            "api/audit/verify/",
            "POST",
            "-",
            fixed("/api/audit/verify/"),
            api(AUDIT_READERS),
            body=verify_upload,
            content_type="multipart",
        ),
        Case("api/audit/ledger/blocks/", "GET", "-", fixed("/api/audit/ledger/blocks/"), api(AUDIT_READERS)),
        *directory_cases(),
    ]
    return cases + account_cases() + admin_cases()


def account_page(ok: Outcome = 200) -> dict:
    """An account page (allauth's, or the token page): every signed-in user `ok` for their own account;
    anonymous → sign in."""
    return {ANONYMOUS: "login", **dict.fromkeys(SIGNED_IN, ok)}


def form(body: dict[str, Any]) -> Callable[[World], dict[str, Any]]:
    return lambda world: body


NEW_PASSWORD = "a-new-password-for-the-matrix"
# The matrix's users enrolled in an authenticator app (tests/conftest.py enrols every member of staff).
TOTP_ENROLLED = (*CLINICIANS, AUDITOR, CUSTODIAN, MODEL_STEWARD)  # staff: enrolled by tests/conftest.py
PASSKEY_OWNERS = {"clinician's": CLINICIAN, "other clinician's": OTHER_CLINICIAN, "missing": None}


def passkey_path(owner: str | None, suffix: str) -> Callable[[World], str]:
    return lambda world: f"/accounts/2fa/webauthn/keys/{world.passkey[owner] if owner else 999999}/{suffix}"


def account_cases() -> list[Case]:
    """The accounts' pages (accounts/urls.py: the allauth views the platform mounts, and the personal token).

    Each is about the signed-in user's own account: the answers differ only by what the account holds (a second
    factor, a passkey, an unverified address). Forms are posted with what changes nothing (a wrong current
    password, a code that is not the code) except where a case says it writes."""
    return [
        Case("accounts/inactive/", "GET", "-", fixed("/accounts/inactive/"), everyone(200)),
        Case("accounts/reauthenticate/", "GET", "-", fixed("/accounts/reauthenticate/"), account_page()),
        Case(
            "accounts/reauthenticate/",
            "POST",
            "wrong password",
            fixed("/accounts/reauthenticate/"),
            account_page(),
            body=form({"password": "not-the-password"}),
            content_type="form",
        ),
        Case("accounts/email/", "GET", "-", fixed("/accounts/email/"), account_page()),
        Case(
            "accounts/email/",
            "POST",
            "add",
            fixed("/accounts/email/"),
            # allauth adds no address to an account protected by a second factor: the form again.
            {**account_page(302), **dict.fromkeys(TOTP_ENROLLED, 200)},
            body=form({"action_add": "", "email": "someone-new@matrix.example"}),
            content_type="form",
            writes=True,
        ),
        Case("accounts/confirm-email/", "GET", "-", fixed("/accounts/confirm-email/"), everyone(200)),
        # The key is the e-mail's bearer secret: whoever holds it may confirm the address (and is sent on: to sign
        # in, its owner home); a key that is no key is not found.
        *(
            Case(
                "accounts/^confirm-email/(?P<key>[-:\\w]+)/$",
                "GET",
                variant,
                path,
                everyone(200),
            )
            for variant, path in (
                ("other patient's", lambda world: f"/accounts/confirm-email/{world.email_key}/"),
                ("missing", fixed("/accounts/confirm-email/no-such-key/")),
            )
        ),
        Case(
            "accounts/^confirm-email/(?P<key>[-:\\w]+)/$",
            "POST",
            "other patient's",
            lambda world: f"/accounts/confirm-email/{world.email_key}/",
            everyone(302),
            body=form({}),
            content_type="form",
            writes=True,
        ),
        Case(
            "accounts/^confirm-email/(?P<key>[-:\\w]+)/$",
            "POST",
            "missing",
            fixed("/accounts/confirm-email/no-such-key/"),
            everyone(404),
            body=form({}),
            content_type="form",
        ),
        Case("accounts/password/change/", "GET", "-", fixed("/accounts/password/change/"), account_page()),
        Case(
            "accounts/password/change/",
            "POST",
            "wrong password",
            fixed("/accounts/password/change/"),
            account_page(),
            body=form({"oldpassword": "not-the-password", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}),
            content_type="form",
        ),
        # Every matrix user has a usable password: the page sends them on to change it.
        Case("accounts/password/set/", "GET", "-", fixed("/accounts/password/set/"), account_page(302)),
        Case(
            "accounts/password/set/",
            "POST",
            "-",
            fixed("/accounts/password/set/"),
            account_page(302),
            body=form({"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}),
            content_type="form",
        ),
        Case("accounts/password/reset/", "GET", "-", fixed("/accounts/password/reset/"), everyone(200)),
        Case(
            "accounts/password/reset/",
            "POST",
            "-",
            fixed("/accounts/password/reset/"),
            everyone(302),
            body=form({"email": "bob@matrix.example"}),
            content_type="form",
        ),
        Case("accounts/password/reset/done/", "GET", "-", fixed("/accounts/password/reset/done/"), everyone(200)),
        # The key is the e-mail's bearer secret: a valid one is taken into the session and the holder sent to the
        # new-password form (nothing changes yet; its owner, signed in, is shown the form at once); one that is no
        # key is told so.
        *(
            Case(
                "accounts/password/^reset/key/(?P<uidb36>[0-9A-Za-z]+)-(?P<key>.+)/$",
                method,
                variant,
                path,
                {**everyone(outcome), OTHER_PATIENT: 200},
                body=form({"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}) if method == "POST" else None,
                content_type="form",
            )
            for method in ("GET", "POST")
            for variant, path, outcome in (
                ("other patient's", lambda world: f"/accounts/password/reset/key/{world.reset_key}/", 302),
                ("missing", fixed("/accounts/password/reset/key/1-no-such-key/"), 200),
            )
        ),
        Case(
            "accounts/password/reset/key/done/", "GET", "-", fixed("/accounts/password/reset/key/done/"), everyone(200)
        ),
        # --- the second factor ---
        Case("accounts/2fa/", "GET", "-", fixed("/accounts/2fa/"), account_page()),
        # Only in the middle of a sign-in (after the password): a signed-in user is sent home, anyone else to sign in.
        *(
            Case(
                "accounts/2fa/authenticate/",
                method,
                variant,
                fixed("/accounts/2fa/authenticate/"),
                {**everyone(302), ANONYMOUS: "login"},
                body=form({"code": "000000"}) if method == "POST" else None,
                content_type="form",
            )
            for method, variant in (("GET", "-"), ("POST", "wrong code"))
        ),
        # Confirming oneself by the second factor: those without one are sent to confirm by password.
        *(
            Case(
                "accounts/2fa/reauthenticate/",
                method,
                variant,
                fixed("/accounts/2fa/reauthenticate/"),
                {**account_page(302), **dict.fromkeys(TOTP_ENROLLED, 200)},
                body=form({"code": "000000"}) if method == "POST" else None,
                content_type="form",
            )
            for method, variant in (("GET", "-"), ("POST", "wrong code"))
        ),
        # Enrolling an authenticator app: the form for those without one (a wrong code: the form again); those
        # enrolled, and an account whose e-mail address is unverified (allauth's rule), are sent away.
        *(
            Case(
                "accounts/2fa/totp/activate/",
                method,
                variant,
                fixed("/accounts/2fa/totp/activate/"),
                {**account_page(200), **dict.fromkeys((*TOTP_ENROLLED, OTHER_PATIENT), 302)},
                body=form({"code": "000000"}) if method == "POST" else None,
                content_type="form",
            )
            for method, variant in (("GET", "-"), ("POST", "wrong code"))
        ),
        # Removing one's authenticator app (then held to enrolment again, being staff): only one's own exists.
        Case(
            "accounts/2fa/totp/deactivate/",
            "GET",
            "-",
            fixed("/accounts/2fa/totp/deactivate/"),
            {**account_page(404), **dict.fromkeys(TOTP_ENROLLED, 200)},
        ),
        Case(
            "accounts/2fa/totp/deactivate/",
            "POST",
            "-",
            fixed("/accounts/2fa/totp/deactivate/"),
            {**account_page(404), **dict.fromkeys(TOTP_ENROLLED, 302)},
            body=form({}),
            content_type="form",
            writes=True,
        ),
        # Nobody in the matrix holds recovery codes yet: nothing to show; new ones for those with a factor.
        *(
            Case(f"accounts/2fa/recovery-codes/{suffix}", "GET", "-", fixed(path), account_page(404))
            for suffix, path in (
                ("", "/accounts/2fa/recovery-codes/"),
                ("download/", "/accounts/2fa/recovery-codes/download/"),
            )
        ),
        Case(
            "accounts/2fa/recovery-codes/generate/",
            "GET",
            "-",
            fixed("/accounts/2fa/recovery-codes/generate/"),
            account_page(),
        ),
        Case(
            "accounts/2fa/recovery-codes/generate/",
            "POST",
            "-",
            fixed("/accounts/2fa/recovery-codes/generate/"),
            {**account_page(200), **dict.fromkeys(TOTP_ENROLLED, 302)},
            body=form({}),
            content_type="form",
            writes=True,
        ),
        Case("accounts/2fa/webauthn/", "GET", "-", fixed("/accounts/2fa/webauthn/"), account_page()),
        # Adding a passkey (an empty credential: the form again); an account whose e-mail address is unverified is
        # sent away (allauth's rule).
        *(
            Case(
                "accounts/2fa/webauthn/add/",
                method,
                "-",
                fixed("/accounts/2fa/webauthn/add/"),
                {**account_page(200), OTHER_PATIENT: 302},
                body=form({"name": "a key", "credential": "{}"}) if method == "POST" else None,
                content_type="form",
            )
            for method in ("GET", "POST")
        ),
        # Confirming oneself by a passkey: its holders (an empty credential is sent to sign in); others are sent
        # to confirm by password.
        Case(
            "accounts/2fa/webauthn/reauthenticate/",
            "GET",
            "-",
            fixed("/accounts/2fa/webauthn/reauthenticate/"),
            {**account_page(302), **dict.fromkeys(CLINICIANS, 200)},
        ),
        Case(
            "accounts/2fa/webauthn/reauthenticate/",
            "POST",
            "-",
            fixed("/accounts/2fa/webauthn/reauthenticate/"),
            {**account_page(302), **dict.fromkeys(CLINICIANS, "login")},
            body=form({"credential": "{}"}),
            content_type="form",
        ),
        # A passkey is its owner's to rename or remove; another's is answered as one that does not exist.
        *(
            Case(
                f"accounts/2fa/webauthn/keys/<int:pk>/{suffix}",
                method,
                variant,
                passkey_path(owner, suffix),
                {
                    ANONYMOUS: "login",
                    **dict.fromkeys(SIGNED_IN, 404),
                    **({owner: 200 if method == "GET" else 302} if owner else {}),
                },
                body=form({"name": "renamed"}) if method == "POST" else None,
                content_type="form",
                writes=method == "POST",
            )
            for suffix in ("remove/", "edit/")
            for method in ("GET", "POST")
            for variant, owner in PASSKEY_OWNERS.items()
        ),
        # Passkey sign-in takes a POST (the credential); an empty one is sent back to the sign-in page.
        Case("accounts/2fa/webauthn/login/", "GET", "-", fixed("/accounts/2fa/webauthn/login/"), everyone("login")),
        Case(
            "accounts/2fa/webauthn/login/",
            "POST",
            "empty credential",
            fixed("/accounts/2fa/webauthn/login/"),
            everyone(302),
            body=form({"credential": ""}),
            content_type="form",
        ),
        Case("accounts/sessions/", "GET", "-", fixed("/accounts/sessions/"), account_page()),
        # Signing out everywhere else: one's own other sessions end.
        Case(
            "accounts/sessions/",
            "POST",
            "-",
            fixed("/accounts/sessions/"),
            account_page(302),
            body=form({}),
            content_type="form",
            writes=True,
        ),
        # --- single sign-on: no provider is configured in the matrix's settings ---
        *(
            Case(f"accounts/oidc/^(?P<provider_id>[^/]+)/{tail}", "GET", "-", fixed(path), everyone(404))
            for tail, path in (
                ("login/", "/accounts/oidc/no-such-provider/login/"),
                ("login/callback/", "/accounts/oidc/no-such-provider/login/callback/"),
            )
        ),
        Case(
            "accounts/3rdparty/login/cancelled/",
            "GET",
            "-",
            fixed("/accounts/3rdparty/login/cancelled/"),
            everyone(200),
        ),
        Case("accounts/3rdparty/login/error/", "GET", "-", fixed("/accounts/3rdparty/login/error/"), everyone(401)),
        # --- the personal API token ---
        Case("accounts/tokens/", "GET", "-", fixed("/accounts/tokens/"), account_page()),
        Case(
            "accounts/tokens/",
            "POST",
            "create",
            fixed("/accounts/tokens/"),
            account_page(),  # staff too: their session passed the second factor (client_for)
            body=form({"action": "create"}),
            content_type="form",
            writes=True,
        ),
    ]


CUSTODIANS = (CUSTODIAN,)
MISSING_GRANTEE = "org:matrix-nowhere"
BOGUS_TOKEN = "ABCD" * 5


def grantee_status_path(prefix: str, existing: bool, verb: str) -> Callable[[World], str]:
    return lambda world: f"{prefix}{world.directory['organisation'] if existing else MISSING_GRANTEE}/{verb}/"


def second_factor_reset_path(prefix: str, existing: bool) -> Callable[[World], str]:
    return lambda world: (
        f"{prefix}{world.directory['resettable'] if existing else MISSING_GRANTEE}/second-factor-reset/"
    )


def invitation_path(prefix: str, existing: bool, verb: str) -> Callable[[World], str]:
    return lambda world: f"{prefix}{world.directory['invitation'] if existing else MISSING_UUID}/{verb}/"


def invitation_body(world: World) -> dict[str, Any]:
    return {"identifier_system": world.directory["system"], "identifier_value": world.directory["mrn"]}


def enrol_body(world: World) -> dict[str, Any]:
    return {
        "username": "matrix-enrolled",
        "password": "a-long-enough-Passphrase-9",
        "password_again": "a-long-enough-Passphrase-9",
    }


def directory_added(kind: str, body: dict[str, Any], *, door: str = "api") -> Case:
    """The custodian adds to the directory (clinicians, model stewards, organisations) through the API (201) or the
    portal's form (302, back to the directory); refused to everyone else."""
    if door == "api":
        url = f"api/directory/{kind}/"
        return Case(url, "POST", "-", fixed(f"/{url}"), api(CUSTODIANS, ok=201), body=lambda world: body, writes=True)
    url = f"directory/{kind}/"
    expect = portal(CUSTODIANS, ok=302)
    return Case(url, "POST", "-", fixed(f"/{url}"), expect, body=lambda world: body, content_type="form", writes=True)


def directory_cases() -> list[Case]:
    """The custodian's directory and invitations (custodians only), and the enrolment pages (anyone with a link)."""
    existing = {"existing": True, "missing": False}
    clinician = {"username": "matrix-new-dr", "display_name": "Dr New", "email": "new@example.org", "organisation": ""}
    return [
        Case("directory/", "GET", "-", fixed("/directory/"), portal(CUSTODIANS)),
        directory_added("organisations", {"slug": "matrix-new-org", "name": "New"}, door="portal"),
        directory_added("clinicians", clinician, door="portal"),
        directory_added(
            "model-stewards",
            {"steward-username": "matrix-portal-steward", "steward-email": "portal-steward@example.org"},
            door="portal",
        ),
        *(
            Case(
                f"directory/grantees/<str:grantee_id>/{verb}/",
                "POST",
                variant,
                grantee_status_path("/directory/grantees/", found, verb),
                portal(CUSTODIANS, ok=302 if found else 404),
                body=lambda world: {},
                content_type="form",
                writes=found,
            )
            for verb in ("deactivate", "reactivate")
            for variant, found in existing.items()
        ),
        *(
            Case(
                "directory/grantees/<str:grantee_id>/second-factor-reset/",
                "POST",
                variant,
                second_factor_reset_path("/directory/grantees/", found),
                portal(CUSTODIANS, ok=302 if found else 404),
                body=lambda world: {},
                content_type="form",
                writes=found,
            )
            for variant, found in existing.items()
        ),
        Case("directory/invitations/", "GET", "-", fixed("/directory/invitations/"), portal(CUSTODIANS)),
        Case(
            "directory/invitations/",
            "POST",
            "-",
            fixed("/directory/invitations/"),
            portal(CUSTODIANS, ok=201),
            body=invitation_body,
            content_type="form",
            writes=True,
        ),
        *(
            Case(
                f"directory/invitations/<str:invitation_id>/{verb}/",
                "POST",
                variant,
                invitation_path("/directory/invitations/", found, verb),
                portal(CUSTODIANS, ok=(302 if verb == "revoke" else 201) if found else 404),
                body=lambda world: {},
                content_type="form",
                writes=found,
            )
            for verb in ("revoke", "reissue")
            for variant, found in existing.items()
        ),
        Case("enrol/", "GET", "-", fixed("/enrol/"), everyone(200)),
        Case(
            "enrol/",
            "POST",
            "unknown code",
            fixed("/enrol/"),
            everyone(404),
            body=lambda world: {"code": BOGUS_TOKEN},
            content_type="form",
        ),
        Case(
            "enrol/link/<str:token>/",
            "GET",
            "pending",
            lambda world: f"/enrol/link/{world.directory['token']}/",
            everyone(200),
        ),
        Case("enrol/link/<str:token>/", "GET", "missing", fixed(f"/enrol/link/{BOGUS_TOKEN}/"), everyone(404)),
        Case(
            "enrol/link/<str:token>/",
            "POST",
            "pending",
            lambda world: f"/enrol/link/{world.directory['token']}/",
            everyone(302),
            body=enrol_body,
            content_type="form",
            writes=True,
        ),
        Case(
            "enrol/link/<str:token>/",
            "POST",
            "missing",
            fixed(f"/enrol/link/{BOGUS_TOKEN}/"),
            everyone(404),
            body=enrol_body,
            content_type="form",
        ),
        Case(
            "enrol/staff/<str:uidb64>/<str:token>/",
            "GET",
            "missing",
            fixed("/enrol/staff/MQ/bogus-token/"),
            everyone(404),
        ),
        Case(
            "enrol/staff/<str:uidb64>/<str:token>/",
            "POST",
            "missing",
            fixed("/enrol/staff/MQ/bogus-token/"),
            everyone(404),
            body=lambda world: {"new_password1": "x", "new_password2": "x"},
            content_type="form",
        ),
        Case("api/directory/grantees/", "GET", "-", fixed("/api/directory/grantees/"), api(CUSTODIANS)),
        directory_added("model-stewards", {"username": "matrix-new-steward", "email": "steward@example.org"}),
        directory_added("organisations", {"slug": "matrix-new-org", "name": "New"}),
        directory_added("clinicians", clinician),
        *(
            Case(
                f"api/directory/grantees/<str:grantee_id>/{verb}/",
                "POST",
                variant,
                grantee_status_path("/api/directory/grantees/", found, verb),
                api(CUSTODIANS, ok=200 if found else 404),
                body=lambda world: {},
                writes=found,
            )
            for verb in ("deactivate", "reactivate")
            for variant, found in existing.items()
        ),
        *(
            Case(
                "api/directory/grantees/<str:grantee_id>/second-factor-reset/",
                "POST",
                variant,
                second_factor_reset_path("/api/directory/grantees/", found),
                api(CUSTODIANS, ok=200 if found else 404),
                body=lambda world: {},
                writes=found,
            )
            for variant, found in existing.items()
        ),
        Case("api/directory/invitations/", "GET", "-", fixed("/api/directory/invitations/"), api(CUSTODIANS)),
        Case(
            "api/directory/invitations/",
            "POST",
            "-",
            fixed("/api/directory/invitations/"),
            api(CUSTODIANS, ok=201),
            body=invitation_body,
            writes=True,
        ),
        *(
            Case(
                f"api/directory/invitations/<str:invitation_id>/{verb}/",
                "POST",
                variant,
                invitation_path("/api/directory/invitations/", found, verb),
                api(CUSTODIANS, ok=(200 if verb == "revoke" else 201) if found else 404),
                body=lambda world: {},
                writes=found,
            )
            for verb in ("revoke", "reissue")
            for variant, found in existing.items()
        ),
    ]


def admin_cases() -> list[Case]:
    """The admin: Django lets staff in; the superuser may do what the admin offers, the staff member (who holds
    no model permission) sees an empty index and is refused every model page; everyone else is sent to the
    admin's sign-in. POSTs are sent with an empty form, so a page that takes a form changes nothing."""

    def object_path(model: str, suffix: str) -> Callable[[World], str]:
        return lambda world: f"/admin/{model}/{world.admin_ids[model]}/{suffix}"

    def empty_form(world: World) -> dict[str, Any]:
        return {}

    def post(route: str, path: Callable[[World], str], expect: dict[str, Outcome], variant: str = "-") -> Case:
        return Case(route, "POST", variant, path, expect, body=empty_form, content_type="form")

    def user_password(world: World) -> str:
        return f"/admin/auth/user/{world.admin_ids['auth/user']}/password/"

    cases = [
        Case("admin/", "GET", "-", fixed("/admin/"), admin_only(200, staff=200)),
        # Django's admin index answers a POST as a GET: it reads nothing of the form.
        post("admin/", fixed("/admin/"), admin_only(200, staff=200)),
        Case("admin/login/", "GET", "-", fixed("/admin/login/"), {**everyone(200), ADMIN: 302, STAFF: 302}),
        # Django's admin sends a signed-in member on to its index for a GET only: a HEAD gets the form's headers.
        Case("admin/login/", "HEAD", "-", fixed("/admin/login/"), everyone(200)),
        Case(
            "admin/login/",
            "POST",
            "wrong password",
            fixed("/admin/login/"),
            everyone(200),
            body=lambda world: {"username": "matrix-patient-alice", "password": "not-the-password"},
            content_type="form",
        ),
        # Signing out is harmless: anyone may, and is sent on. A GET does not sign out: the admin's users are
        # told 405, the others are sent to the admin's index (which sends them to its sign-in).
        post("admin/logout/", fixed("/admin/logout/"), everyone(302)),
        Case(
            "admin/logout/",
            "GET",
            "-",
            fixed("/admin/logout/"),
            {**dict.fromkeys(USERS, "admin-index"), ADMIN: 405, STAFF: 405},
        ),
        Case("admin/password_change/", "GET", "-", fixed("/admin/password_change/"), admin_only(200, staff=200)),
        # One's own password, with an empty form: refused by the form, nothing changed.
        post("admin/password_change/", fixed("/admin/password_change/"), admin_only(200, staff=200)),
        Case(
            "admin/password_change/done/",
            "GET",
            "-",
            fixed("/admin/password_change/done/"),
            admin_only(200, staff=200),
        ),
        Case("admin/autocomplete/", "GET", "-", fixed("/admin/autocomplete/"), admin_only(403, staff=403)),
        Case("admin/jsi18n/", "GET", "-", fixed("/admin/jsi18n/"), admin_only(200, staff=200)),
        # Django's "view on site" redirect: staff only; users have no public page (404).
        *(
            Case(
                "admin/r/<path:content_type_id>/<path:object_id>/",
                method,
                "-",
                lambda world: f"/admin/r/{world.admin_ids['content_type']}/{world.admin_ids['auth/user']}/",
                admin_only(404, staff=404),
            )
            for method in ("GET", "POST")
        ),
        # An application's index: the staff member holds no permission in any, so none exists for them.
        Case(
            "admin/^(?P<app_label>auth|authtoken|records)/$",
            "GET",
            "-",
            fixed("/admin/records/"),
            admin_only(200, staff=404),
        ),
        post("admin/^(?P<app_label>auth|authtoken|records)/$", fixed("/admin/records/"), admin_only(200, staff=404)),
        *(
            Case("admin/(?P<url>.*)$", method, "-", fixed("/admin/no-such-page/"), admin_only(404, staff=404))
            for method in ("GET", "POST")
        ),
        Case("admin/auth/user/<id>/password/", "GET", "-", user_password, admin_only(200, staff=403)),
        post("admin/auth/user/<id>/password/", user_password, admin_only(200, staff=403)),
    ]
    # Groups, users and tokens are managed here; records are read-only (nothing is added, changed or deleted).
    editable = {"auth/group": True, "auth/user": True, "authtoken/tokenproxy": True}
    for model in (
        "auth/group",
        "auth/user",
        "authtoken/tokenproxy",
        "records/patient",
        "records/record",
        "records/recordversion",
    ):
        writable = 200 if editable.get(model, False) else 403
        changelist, add = f"admin/{model}/", f"admin/{model}/add/"
        history, delete = f"admin/{model}/<path:object_id>/history/", f"admin/{model}/<path:object_id>/delete/"
        change, old_url = f"admin/{model}/<path:object_id>/change/", f"admin/{model}/<path:object_id>/"
        cases += [
            Case(changelist, "GET", "-", fixed(f"/admin/{model}/"), admin_only(200, staff=403)),
            # The list's actions form; with no action chosen, the list again.
            post(changelist, fixed(f"/admin/{model}/"), admin_only(200, staff=403)),
            Case(add, "GET", "-", fixed(f"/admin/{model}/add/"), admin_only(writable, staff=403)),
            post(add, fixed(f"/admin/{model}/add/"), admin_only(writable, staff=403)),
            Case(history, "GET", "-", object_path(model, "history/"), admin_only(200, staff=403)),
            post(history, object_path(model, "history/"), admin_only(200, staff=403)),  # answered as a GET
            Case(delete, "GET", "-", object_path(model, "delete/"), admin_only(writable, staff=403)),
            # Without the confirmation field, the confirmation page again: nothing is deleted.
            post(delete, object_path(model, "delete/"), admin_only(writable, staff=403)),
            Case(change, "GET", "-", object_path(model, "change/"), admin_only(200, staff=403)),
            post(change, object_path(model, "change/"), admin_only(writable, staff=403)),
            # Django's redirect from the old object URL to its change page (which then asks for staff).
            *(Case(old_url, method, "-", object_path(model, ""), everyone(302)) for method in ("GET", "POST")),
        ]
    return cases


CASES = build_cases()


# --- running a case ------------------------------------------------------------------------------


@functools.cache
def shared_handler() -> ClientHandler:
    """One test-client handler for every client of the module: a handler loads the middleware on its first
    request, and WhiteNoise then indexes every static file (~50 ms), once per client otherwise. A handler keeps
    no state of a client's (cookies and sessions are the client's)."""
    return ClientHandler(enforce_csrf_checks=False)


def client_for(world: World, who: str) -> Client:
    """A client of `who`, signed in just now through the forms (the password, and the second factor of those
    enrolled in one: allauth's record of them in the session), who has also just confirmed their password again,
    so that the pages that ask for that (a second factor's, a passkey's) give their own answer: whose passkey
    may be removed is the question, not whether a stale session is asked to confirm."""
    client = Client()
    client.handler = shared_handler()
    if who != ANONYMOUS:
        user = world.users[who]
        client.force_login(user)
        now = time.time()
        methods: list[dict[str, Any]] = [
            {"method": "password", "at": now, "username": user.username, "reauthenticated": True}
        ]
        if Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists():
            methods.append({"method": "mfa", "at": now, "type": "totp"})
        session = client.session
        session[AUTHENTICATION_METHODS_SESSION_KEY] = methods
        session["account_authentication_methods_user"] = str(user.pk)
        session.save()
    return client


def send(client: Client, world: World, case: Case, method: str | None = None, body: Case | None = None) -> Any:
    """`case`'s request (its path, body and headers), or the same path with `method` and the body of the case
    `body` (a case of the same route that sends one)."""
    method = method or case.method
    body = body or case
    path = case.path(world)
    headers: dict[str, str] = {}
    if case.htmx:
        headers = {"HX-Request": "true", "HX-Current-URL": f"http://testserver{path}"}
    if method in ("GET", "HEAD", "OPTIONS"):
        return client.generic(method, path, headers=headers)
    data = body.body(world) if body.body else {}
    if body.content_type in ("form", "multipart") and method == "POST":
        return client.post(path, data, headers=headers)
    if body.content_type == "multipart":
        return client.generic(
            method, path, encode_multipart(BOUNDARY, data), content_type=MULTIPART_CONTENT, headers=headers
        )
    if body.content_type == "form":
        return client.generic(
            method, path, urlencode(data, doseq=True), content_type="application/x-www-form-urlencoded", headers=headers
        )
    return client.generic(method, path, json.dumps(data), content_type=body.content_type, headers=headers)


def outcome_matches(response: Any, expected: Outcome) -> bool:
    if expected == OWNER_CANCELS:  # a cancel case runs on a shared world, in any order: done, or done before
        return response.status_code in (200, 409) and response.json()[
            "code" if response.status_code == 409 else "status"
        ] in ("analysis_finished", "cancelled")
    if expected == "login":
        target = response.get("HX-Redirect") or (response.get("Location") if response.status_code == 302 else "")
        return bool(target) and target.startswith("/accounts/login/")
    if expected == "admin-login":
        return response.status_code == 302 and response["Location"].startswith("/admin/login/")
    if expected == "admin-index":
        return response.status_code == 302 and response["Location"] == "/admin/"
    return response.status_code == expected


REFUSALS: tuple[Outcome, ...] = (401, 403, 404, 405, "login", "admin-login")


def refused(expected: Outcome) -> bool:
    return expected in REFUSALS or expected == "admin-index"


def succeeded(expected: Outcome) -> bool:
    return expected == OWNER_CANCELS or (isinstance(expected, int) and 200 <= expected < 400)


# --- no effect -----------------------------------------------------------------------------------

# Signing in (force_login) and out writes the session table; nothing else may change.
UNWATCHED_TABLES = {"django_session"}


@dataclass(frozen=True)
class Effects:
    """What a request may change: a digest of each table's rows, the ledger's height, the platform's files."""

    tables: dict[str, str]
    ledger_height: int
    files: frozenset[str]

    def changed(self, after: "Effects") -> list[str]:
        changes = [table for table, digest in self.tables.items() if after.tables.get(table) != digest]
        if self.ledger_height != after.ledger_height:
            changes.append(f"ledger height {self.ledger_height} -> {after.ledger_height}")
        changes += [f"file {name}" for name in sorted(self.files ^ after.files)]
        return changes


def _value(value: Any) -> Any:
    """A column's value as compared: bytes (ciphertexts) by their digest."""
    return hashlib.sha256(value).hexdigest() if isinstance(value, bytes | memoryview) else value


@pytest.fixture(scope="module")
def world_ledger(world_folder):
    """A client of the world's ledger of its own, for its height: the application's is opened afresh per test."""
    from ledger.embedded import EmbeddedLedger

    client = EmbeddedLedger(world_folder / "ledger.sqlite3")
    yield client
    client.close()


@pytest.fixture
def effects(world_folder, world_ledger) -> Callable[[], Effects]:
    """effects() -> the world's Effects now, as this test's transaction sees the database."""

    def now() -> Effects:
        tables = {}
        with connection.cursor() as cursor:
            for table in sorted(set(connection.introspection.table_names(cursor)) - UNWATCHED_TABLES):
                cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
                rows = sorted(repr(tuple(_value(value) for value in row)) for row in cursor)
                tables[table] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
        files = frozenset(
            str(path.relative_to(world_folder))
            for folder in ("blobs", "exports")
            for path in (world_folder / folder).rglob("*")
            if path.is_file()
        )
        return Effects(tables, world_ledger.height(), files)

    return now


# The API's description (the OpenAPI document and its HTML page) answers in its own formats, refusals included.
API_DESCRIPTION = ("api/schema/", "api/docs/")


def body_of(response: Any) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def assert_refusal_shape(route: str, response: Any, what: str) -> None:
    """API refusals name no object and carry the one error shape."""
    if route.startswith("api/") and route not in API_DESCRIPTION and body_of(response):
        assert set(response.json()) == {"code", "message", "detail"}, what
    if route.startswith("fhir/") and body_of(response):
        assert response.json()["resourceType"] == "OperationOutcome", what


@pytest.mark.django_db
@pytest.mark.parametrize("who", USERS)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_permission(case, who, world, effects):
    client = client_for(world, who)
    before = effects()

    response = send(client, world, case)

    expected = case.expect[who]
    location = response.get("Location") or response.get("HX-Redirect") or ""
    what = f"{case.id} as {who}"
    assert outcome_matches(response, expected), f"{what}: expected {expected}, got {response.status_code} {location}"
    if expected in (401, 403, 404):
        assert_refusal_shape(case.route, response, what)
    if not (case.writes and succeeded(expected)):
        changes = before.changed(effects())
        if who in case.logged:
            assert "audit_accessevent" in changes, f"{what} ({expected}) was not logged"
            changes = [c for c in changes if c != "audit_accessevent" and not c.startswith("ledger height")]
        assert not changes, f"{what} ({expected}) changed the world: {changes}"


# --- every method --------------------------------------------------------------------------------

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@dataclass(frozen=True)
class Probe:
    """A method no case of the route sends, on the route's first URL (its own object where the route takes
    one: the object a user could act on), with the body of the route's case that sends one (so that a refusal
    cannot be a validation error). One URL is enough: a route that answers the method at all fails here."""

    method: str
    case: Case
    body: Case | None

    @property
    def id(self) -> str:
        return f"{self.method} {self.case.route or '/'} [{self.case.variant}]"


def cases_by_route() -> dict[str, list[Case]]:
    routes: dict[str, list[Case]] = {}
    for case in CASES:
        routes.setdefault(case.route, []).append(case)
    return routes


def probes() -> list[Probe]:
    found = []
    for cases in cases_by_route().values():
        named = {case.method for case in cases}
        body = next((case for case in cases if case.body is not None), None)
        for method in METHODS:
            if method in named or (method == "HEAD" and "GET" in named):
                continue
            found.append(Probe(method, cases[0], body))
    return found


def allowed_methods(response: Any) -> set[str]:
    return {method.strip() for method in response.get("Allow", "").split(",") if method.strip()}


@pytest.mark.django_db
@pytest.mark.parametrize("probe", probes(), ids=lambda probe: probe.id)
def test_a_method_no_case_sends_is_refused_without_effect(probe, world, effects):
    named = {case.method for case in cases_by_route()[probe.case.route]}
    for who in USERS:
        client = client_for(world, who)
        before = effects()

        response = send(client, world, probe.case, probe.method, probe.body)

        what = f"{probe.id} as {who}"
        answer = f"{response.status_code} {response.get('Location', '')}".strip()
        if probe.method == "OPTIONS" and response.status_code == 200:
            # A description of the route (DRF's metadata): the methods it answers are the ones the matrix sends.
            assert allowed_methods(response) - {"HEAD", "OPTIONS"} == named, f"{what}: Allow {response.get('Allow')}"
        else:
            assert any(outcome_matches(response, outcome) for outcome in REFUSALS), f"{what}: got {answer}"
            assert_refusal_shape(probe.case.route, response, what)
        changes = before.changed(effects())
        assert not changes, f"{what} ({answer}) changed the world: {changes}"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "case",
    [
        case
        for case in CASES
        if case.method == "GET" and case.route not in {c.route for c in CASES if c.method == "HEAD"}
    ],
    ids=lambda case: case.id,
)
def test_head_answers_as_get_or_is_refused_without_effect(case, world, effects):
    for who in USERS:
        sign_in_limits_reset()
        client = client_for(world, who)
        before = effects()

        response = send(client, world, case, "HEAD")

        expected = case.expect[who]
        what = f"HEAD {case.route or '/'} [{case.variant}] as {who}"
        assert outcome_matches(response, expected) or response.status_code == 405, (
            f"{what}: GET answers {expected}, HEAD {response.status_code} {response.get('Location', '')}"
        )
        assert not body_of(response), what
        changes = before.changed(effects())
        assert not changes, f"{what} changed the world: {changes}"


# --- another's object is a missing object, for every method ---------------------------------------

MISSING_CONSENT = "cns-" + "0" * 32  # the shape of a consent id (consent.services), of no consent
CONSENT_URLS = (
    "/api/consents/{}/",
    "/api/consents/{}/fhir/",
    "/api/consents/{}/history/",
    "/api/consents/{}/revoke/",
    "/api/consents/{}/revoke/sign-request/",
    "/consent/{}/",
    "/consent/{}/revoke/",
    "/fhir/Consent/{}",
)
# Every signed-in user who may not see OTHER_PATIENT's consent (it names OTHER_CLINICIAN).
NOT_ITS_READERS = (PATIENT, CLINICIAN, CUSTODIAN, ADMIN, NO_ROLE)


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
@pytest.mark.parametrize("url", CONSENT_URLS)
@pytest.mark.parametrize("who", NOT_ITS_READERS)
def test_another_patients_consent_is_answered_exactly_as_one_that_does_not_exist(world, who, url, method):
    """Revoking another patient's consent answered 403 where reading it answered 404: that told it exists."""
    client = client_for(world, who)

    foreign, missing = (
        client.generic(method, url.format(consent_id), "{}", content_type="application/json")
        for consent_id in (world.consent[OTHER_PATIENT], MISSING_CONSENT)
    )

    where = f"{method} {url} as {who}"
    assert foreign.status_code == missing.status_code, f"{where}: {foreign.status_code} and {missing.status_code}"
    assert foreign.status_code >= 400 or method == "OPTIONS", where  # OPTIONS describes the route, no object
    assert foreign.get("Allow") == missing.get("Allow"), where
    # The same body: a portal page's sign-out form carries a fresh CSRF token each time, which is left out.
    foreign_body, missing_body = (
        re.sub(rb'name="csrfmiddlewaretoken" value="[^"]*"', b"", answer.content) for answer in (foreign, missing)
    )
    assert foreign_body == missing_body, where
    consent = Consent.objects.get(consent_id=world.consent[OTHER_PATIENT])
    assert consent.status == "active", where


EMERGENCY_URLS = (
    "/api/care/emergencies/{}/",
    "/api/care/emergencies/{}/records/?category=imaging",
    "/api/care/emergencies/{}/review/",
    "/care/emergencies/{}/",
    "/care/emergencies/{}/imaging/",
    "/care/emergencies/{}/review/",
)
# Every signed-in user who may not see the clinician's declaration (it is about PATIENT).
NOT_ITS_VIEWERS = (OTHER_PATIENT, OTHER_CLINICIAN, CUSTODIAN, ADMIN, NO_ROLE)


def declaration_probes() -> list[Any]:
    return [
        pytest.param(who, url, method, id=f"{who}-{method} {url}")
        for who in NOT_ITS_VIEWERS
        for url in EMERGENCY_URLS
        for method in METHODS
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(("who", "url", "method"), declaration_probes())
def test_another_clinicians_declaration_is_answered_exactly_as_one_that_does_not_exist(
    world, effects, who, url, method
):
    """A declaration's id must not be confirmed to anyone who may not see it: not by the status, not by the words."""
    client = client_for(world, who)
    before = effects()

    foreign, missing = (
        client.generic(method, url.format(declaration_id), "{}", content_type="application/json")
        for declaration_id in (world.emergency[CLINICIAN], MISSING_UUID)
    )

    where = f"{method} {url} as {who}"
    assert foreign.status_code == missing.status_code, f"{where}: {foreign.status_code} and {missing.status_code}"
    assert foreign.status_code >= 400 or method == "OPTIONS", where
    assert foreign.get("Allow") == missing.get("Allow"), where
    # The same body, once the id asked for (a refusal page's way back names it) and the sign-out form's fresh CSRF
    # token are left out.
    foreign_body, missing_body = (
        re.sub(rb'name="csrfmiddlewaretoken" value="[^"]*"', b"", answer.content).replace(declaration_id.encode(), b"")
        for answer, declaration_id in ((foreign, world.emergency[CLINICIAN]), (missing, MISSING_UUID))
    )
    assert foreign_body == missing_body, f"{where}: {foreign_body[:300]!r} and {missing_body[:300]!r}"
    assert not before.changed(effects()), where


# --- completeness --------------------------------------------------------------------------------


def url_routes() -> set[str]:
    """Every URL pattern of the project, as its full route."""

    def walk(resolver: URLResolver, prefix: str) -> set[str]:
        routes = set()
        for pattern in resolver.url_patterns:
            if isinstance(pattern, URLResolver):
                routes |= walk(pattern, prefix + str(pattern.pattern))
            else:
                assert isinstance(pattern, URLPattern)
                routes.add(prefix + str(pattern.pattern))
        return routes

    return walk(get_resolver(), "")


def test_every_url_pattern_is_in_the_matrix():
    covered = {case.route for case in CASES}
    missing = sorted(url_routes() - covered)
    gone = sorted(covered - url_routes())
    assert not missing, f"URL patterns the permission matrix does not cover: {missing}"
    assert not gone, f"Matrix cases for URL patterns that no longer exist: {gone}"


def test_every_case_names_every_user():
    for case in CASES:
        assert set(case.expect) == set(USERS), case.id


def test_outside_the_admin_the_staff_member_gets_exactly_the_answers_of_a_user_without_a_role():
    for case in CASES:
        if not case.route.startswith("admin/"):
            assert case.expect[STAFF] == case.expect[NO_ROLE], case.id


MODEL_CARD_ROUTES = (
    "analytics/models/<str:name>/",
    "api/models/^$",
    "api/models/^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,63})/$",
)
TRAINING_ROUTES = {  # the steward's (the patient's "models my records trained" is under training/ too)
    case.route
    for case in CASES
    if case.route.startswith(("training/", "api/training/"))
    and "my-models/" not in case.route
    and "federation/" not in case.route  # between platform instances: no user's, the steward's neither
}


def test_the_model_steward_reaches_no_page_or_endpoint_of_the_other_roles():
    """Issue 18: the steward gets exactly the answers of a user without a role everywhere but their training runs'
    pages and endpoints (theirs alone), the start page (which sends them there), the model cards (shared by every
    role: the steward publishes the models they describe) and their own account's pages (as any member of staff):
    every page and endpoint of the custodian, the clinicians, the auditors and the patients refuses them."""
    differing = {case.route for case in CASES if case.expect[MODEL_STEWARD] != case.expect[NO_ROLE]}
    # Their own account's pages answer them as every enrolled member of staff (a second factor to manage).
    own_account = {route for route in differing if route.startswith("accounts/")}
    assert all(case.expect[MODEL_STEWARD] == case.expect[AUDITOR] for case in CASES if case.route in own_account)
    assert differing - own_account == {"", *MODEL_CARD_ROUTES, *TRAINING_ROUTES}, differing
    assert all(  # and nobody else reaches the training runs
        outcome in (401, 403, "login")
        for case in CASES
        if case.route in TRAINING_ROUTES
        for who, outcome in case.expect.items()
        if who != MODEL_STEWARD
    )


@pytest.mark.django_db
def test_the_staff_member_sees_no_application_in_the_admin(world):
    """Let into the admin by is_staff, holding no model permission: an empty index, and no model page."""
    response = client_for(world, STAFF).get("/admin/")
    assert response.status_code == 200
    assert response.context["app_list"] == []
    # The admin's pages that answer the staff member 200 are the site's own: no application's, no model's.
    answered = {case.route for case in CASES if case.route.startswith("admin/") and case.expect[STAFF] == 200}
    assert answered == {
        "admin/",
        "admin/login/",  # a wrong password, as for everyone
        "admin/password_change/",
        "admin/password_change/done/",
        "admin/jsi18n/",
    }


def test_the_ids_of_other_users_objects_are_tried_on_every_url_that_takes_one():
    """Every portal and API URL taking an object id is tried with another user's object and a missing one."""
    others = {"other patient's", "other clinician's", "other auditor's", "other steward's"}
    for route in {case.route for case in CASES}:
        # A model's name and a single sign-on provider's id name configuration, not anyone's object.
        if route.startswith("admin/") or "<" not in route or "name>" in route or "provider_id>" in route:
            continue
        variants = {case.variant for case in CASES if case.route == route}
        assert "missing" in variants, route
        if route.startswith(NO_OWNER_ROUTES):
            continue
        assert variants & others, route


# Objects no user owns: the directory's grantees and invitations are the custodians' together, an enrolment link is
# anyone's who holds it, and misuse alerts are every auditor's. Their routes are tried with an existing and a missing
# object only. An invitation between platform instances is no user's: a peer instance's signature alone reaches it
# (tests/training/test_federation_api.py tries another peer's).
NO_OWNER_ROUTES = (
    "directory/",
    "api/directory/",
    "enrol/",
    "oversight/",
    "api/oversight/",
    "api/training/federation/",
)


# --- what a list shows ---------------------------------------------------------------------------


def listed(response: Any, key: str) -> set[str]:
    body = response.json()
    rows = body["results"] if isinstance(body, dict) else body
    return {str(row[key]) for row in rows}


@pytest.mark.django_db
def test_lists_show_each_user_only_what_is_theirs(world):
    def get(who: str, path: str) -> Any:
        response = client_for(world, who).get(path)
        assert response.status_code == 200, (who, path)
        return response

    for who, other in ((PATIENT, OTHER_PATIENT), (OTHER_PATIENT, PATIENT)):
        records = listed(get(who, "/api/records/"), "id")
        assert world.record[who] in records
        assert world.record[other] not in records
        consents = listed(get(who, "/api/consents/"), "consent_id")
        assert world.consent[who] in consents
        assert world.consent[other] not in consents
        fhir_consents = {item["resource"]["id"] for item in get(who, "/fhir/Consent").json().get("entry", [])}
        assert world.consent[who] in fhir_consents
        assert world.consent[other] not in fhir_consents
        events = get(who, "/api/audit/events/").json()["results"]
        assert events, who
        assert {event["patient_pseudonym"] for event in events} == {world.pseudonym[who]}
        page = get(who, "/records/").content.decode()
        assert world.record[who] in page
        assert world.record[other] not in page
    for who, other in ((CLINICIAN, OTHER_CLINICIAN), (OTHER_CLINICIAN, CLINICIAN)):
        analyses = listed(get(who, "/api/analyses/"), "id")
        assert analyses == {world.analysis[who]}
        named = {PATIENT: CLINICIAN, OTHER_PATIENT: OTHER_CLINICIAN}
        consents = listed(get(who, "/api/consents/"), "consent_id")
        assert {world.consent[p] for p, c in named.items() if c == who} <= consents
        assert not {world.consent[p] for p, c in named.items() if c != who} & consents
        assert world.analysis[other] not in get(who, "/analytics/").content.decode()
    exports = listed(get(AUDITOR, "/api/audit/exports/"), "id")
    assert set(world.export.values()) <= exports  # the audit team shares its exports


@pytest.mark.django_db
def test_each_user_sees_only_the_emergencies_theirs_to_see(world):
    """A clinician their own declarations, a patient those about them (without the clinician's justification, which
    is for the auditors), an auditor every one; in the API and in the portal's pages."""

    def get(who: str, path: str) -> Any:
        response = client_for(world, who).get(path)
        assert response.status_code == 200, (who, path)
        return response

    def declared_by(clinician: str) -> set[str]:
        keys = {clinician, *(review_key(door, clinician) for door in DOORS)}
        return keys | ({REFUSED_CATEGORY} if clinician == CLINICIAN else set())

    everything = set(world.emergency.values())
    assert {key for clinician in CLINICIANS for key in declared_by(clinician)} == set(world.emergency)
    for who in CLINICIANS:
        mine = {world.emergency[key] for key in declared_by(who)}
        rows = get(who, "/api/care/emergencies/").json()
        assert {row["declaration_id"] for row in rows} == mine, who
        assert {row["justification"] for row in rows} == {JUSTIFICATION}, who
        page = get(who, "/care/emergencies/").content.decode()
        assert set(re.findall(r'data-declaration-id="([^"]+)"', page)) == mine, who
    for who, clinician in ((PATIENT, CLINICIAN), (OTHER_PATIENT, OTHER_CLINICIAN)):
        about_me = {world.emergency[key] for key in declared_by(clinician) - {REFUSED_CATEGORY}}
        rows = get(who, "/api/care/emergencies/").json()
        assert {row["declaration_id"] for row in rows} == about_me, who
        assert {row["patient_pseudonym"] for row in rows} == {world.pseudonym[who]}, who
        assert {row["justification"] for row in rows} == {None}, who
        page = get(who, "/care/my-emergency-access/").content.decode()
        assert set(re.findall(r'data-declaration-id="([^"]+)"', page)) == about_me, who
        assert JUSTIFICATION not in page, who
    rows = get(AUDITOR, "/api/care/emergencies/").json()
    assert {row["declaration_id"] for row in rows} == everything
    queue = get(AUDITOR, "/care/emergencies/review/").content.decode()
    assert set(re.findall(r'data-declaration-id="([^"]+)"', queue)) == everything


@pytest.mark.django_db
def test_only_the_owning_patient_reads_a_records_clinical_content(world):
    for who in (PATIENT, AUDITOR, CUSTODIAN, ADMIN):
        body = client_for(world, who).get(f"/api/records/{world.record[PATIENT]}/").json()
        assert (body.get("bundle") is not None) == (who == PATIENT), who
