"""Seed demo users and patients whose records come from scikit-learn's bundled datasets.

Everything goes through record_ingest, so every record is encrypted and anchored exactly as a real
ingest would be. Re-running is safe: records whose content is unchanged are left alone, users are
kept and their passwords reset (the new ones are printed). The demo clinician is registered in the
grantee directory with their organisation, so the demo patients have someone to grant consent to.
"""

import hashlib
import json
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import CommandParser
from django.db import transaction

from accounts.selectors import totp_code_now
from accounts.services import recovery_codes_enrol, second_factors_remove, totp_enrol
from health_platform.commands import PlatformCommand
from health_platform.model_catalogue import catalogue
from health_platform.quickstart import CredentialRow, credentials_file_write, credentials_table
from health_platform.roles import Role, role_group
from health_platform.second_factor import second_factor_required
from health_platform.services import clinician_register, organisation_create
from records.codes import BREAST_CANCER_DATASET, DIABETES_DATASET
from records.crypto import patient_pseudonym
from records.demo import demo_bundles, demo_patients
from records.models import AnchorState, Patient, RecordVersion
from records.services import patient_link_user, record_ingest

# The demo clinician's name in the grantee directory and their organisation: what the patients' grant form offers.
DEMO_CLINICIAN_NAME = "Dr Alex Morgan"
DEMO_ORGANISATION = ("st-marys", "St Mary's Hospital")

# (username, role, demo patient linked to it)
DEMO_USERS = (
    ("demo-custodian", Role.CUSTODIAN, None),
    ("demo-clinician", Role.CLINICIAN, None),
    ("demo-auditor", Role.AUDITOR, None),
    ("demo-model-steward", Role.MODEL_STEWARD, None),
    ("demo-patient-bc", Role.PATIENT, (BREAST_CANCER_DATASET, 0)),
    ("demo-patient-db", Role.PATIENT, (DIABETES_DATASET, 0)),
)


class Command(PlatformCommand):
    help = (
        "Create demo users (one per role, the model steward included, two patients; the clinician at St Mary's "
        "Hospital) and ingest demo patients built from scikit-learn's "
        "breast-cancer (imaging) and diabetes (laboratory) datasets. Prints the users' new passwords."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--patients",
            type=int,
            default=200,
            help="Patients per dataset: the first N breast-cancer rows, then the first N diabetes rows "
            "(capped at 569 and 442). Default 200.",
        )
        parser.add_argument(
            "--credentials-file",
            type=Path,
            help="Also write the users and their new passwords to this file (mode 0600), for the box make run "
            "prints (health_platform.quickstart).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        count = max(1, options["patients"])
        credentials: list[CredentialRow] = []
        users = {}
        passwords = [secrets.token_urlsafe(18) for _user in DEMO_USERS]
        # PBKDF2 releases the GIL: the five hashes (a second of CPU at Django's iteration count) take both cores.
        with ThreadPoolExecutor(max_workers=len(DEMO_USERS)) as pool:
            hashes = list(pool.map(make_password, passwords))
        with transaction.atomic():
            for (username, role, _patient), password, hashed in zip(DEMO_USERS, passwords, hashes, strict=True):
                users[username] = _demo_user(username=username, role=role, password_hash=hashed)
                credentials.append((role.value, username, password, ""))
            organisation = organisation_create(slug=DEMO_ORGANISATION[0], name=DEMO_ORGANISATION[1])
            clinician_register(
                user=users["demo-clinician"], display_name=DEMO_CLINICIAN_NAME, organisation=organisation
            )
            # Staff come enrolled (a new secret and new recovery codes at each run, like their passwords).
            second_factors = {}
            for username, _role, _patient in DEMO_USERS:
                if second_factor_required(users[username]):
                    second_factors_remove(user=users[username])
                    secret = totp_enrol(user=users[username])
                    recovery = recovery_codes_enrol(user=users[username])[0]
                    second_factors[username] = (secret, recovery)

        started = time.perf_counter()
        bodies = [
            json.dumps(bundle).encode()
            for dataset in (BREAST_CANCER_DATASET, DIABETES_DATASET)
            for bundle in demo_bundles(
                patients=demo_patients(dataset=dataset, count=count), max_entries=settings.INGEST_MAX_ENTRIES
            )
        ]
        totals = {"records": 0, "new": 0, "pending": 0, "bundles": len(bodies)}
        seeded = _demo_records_seeded(bodies=bodies)
        if seeded is not None:
            totals["records"] = seeded
        else:
            ingested: dict[str, str] = {}
            for body in bodies:
                result = record_ingest(raw_body=body, actor=users["demo-custodian"])
                totals["records"] += len(result.records)
                totals["new"] += sum(not record.unchanged for record in result.records)
                totals["pending"] += sum(not record.anchored for record in result.records)
                ingested.update({f"{r.patient_pseudonym}|{r.category}": r.sha256 for r in result.records})
            if not totals["pending"]:
                _demo_records_seeded_note(bodies=bodies, records=ingested)
        elapsed = time.perf_counter() - started

        for username, _role, linked in DEMO_USERS:
            if linked is not None:
                dataset, row = linked
                key = demo_patients(dataset=dataset, count=row + 1)[row].patient_key
                patient = Patient.objects.get(pseudonym=patient_pseudonym(key))
                patient_link_user(patient=patient, user=users[username])
        granted = _demo_consents(count=count, clinician=users["demo-clinician"])
        self.stdout.write(
            f"{granted} demo patients granted the demo clinician consent for their model (on the ledger)."
        )
        if count >= 4:
            stranger = demo_patients(dataset=BREAST_CANCER_DATASET, count=4)[3].identifier
            self.stdout.write(
                f"Demo patient {stranger} never consented to the demo clinician: to try emergency access, declare "
                "one for that identifier at /care/emergencies/ (an auditor reviews it at /care/emergencies/review/)."
            )

        if seeded is not None:
            self.stdout.write(
                f"The {seeded} demo records are in the database, anchored and unchanged since they were ingested "
                f"from these very bundles: nothing to ingest (0 new versions; checked in {elapsed:.1f} s)."
            )
        else:
            self.stdout.write(
                f"Ingested {totals['records']} records in {totals['bundles']} bundles in {elapsed:.1f} s "
                f"({totals['records'] / elapsed if elapsed else 0:.0f} records/s): {totals['new']} new versions, "
                f"{totals['records'] - totals['new']} unchanged, {totals['pending']} waiting for the ledger."
            )
        if totals["pending"]:
            self.stdout.write(self.style.WARNING("Some records are not anchored yet: start a worker to anchor them."))
        self.stdout.write("")
        self.stdout.write(
            "Staff sign in with their password, then a code of an authenticator app holding the secret printed "
            "(add it by hand, or scan the QR code at /accounts/2fa/ once signed in), or a recovery code (once each)."
        )
        rows: list[CredentialRow] = []
        for role_name, username, password, _extra in credentials:
            factor = second_factors.get(username)
            extra = f"{factor[0]}  {totp_code_now(secret=factor[0])}  {factor[1]}" if factor else ""
            rows.append((role_name, username, password, extra))
        heading = "authenticator secret (base32)     code now  recovery code"
        for line in credentials_table(rows, extra_heading=heading):
            self.stdout.write(line)
        if options["credentials_file"] is not None:
            credentials_file_write(options["credentials_file"], rows, extra_heading=heading)


def _demo_user(*, username: str, role: Role, password_hash: str | None) -> Any:
    """The demo user `username` in `role`, active, with this password hash (None: no password can sign in)."""
    user, _created = get_user_model().objects.get_or_create(username=username)
    user.is_active = True
    if password_hash is None:
        user.set_unusable_password()
    else:
        user.password = password_hash
    user.save()
    user.groups.add(role_group(role))
    return user


def _demo_seed_note_path() -> Path:
    return Path(settings.VAR_DIR) / "demo-seed.json"


def _bundles_digest(bodies: list[bytes]) -> str:
    digest = hashlib.sha256()
    for body in bodies:
        digest.update(b"%d:" % len(body) + body)
    return digest.hexdigest()


def _demo_records_seeded(*, bodies: list[bytes]) -> int | None:
    """How many demo records there are, if ingesting `bodies` again would change nothing; else None.

    record_ingest leaves a record whose content is unchanged as it is, and anchors only versions not anchored yet:
    ingesting the same bundles again does nothing when every record they make still has, as its latest version,
    the anchored version they made. The note seed_demo leaves in the var folder says which bundles made which
    versions (by hash); the database says what the latest versions are now. Re-ingesting 400 records only to find
    them unchanged (FHIR validation and canonical hashing) took a third of a restart.
    """
    try:
        note = json.loads(_demo_seed_note_path().read_text())
    except (OSError, ValueError):
        return None
    records: dict[str, str] = note.get("records", {}) if isinstance(note, dict) else {}
    if not records or note.get("bundles_sha256") != _bundles_digest(bodies):
        return None
    pseudonyms = {key.rpartition("|")[0] for key in records}
    latest: dict[str, tuple[int, str, bool]] = {}
    versions = RecordVersion.objects.filter(record__patient__pseudonym__in=pseudonyms).values_list(
        "record__patient__pseudonym", "record__category", "version", "sha256", "anchor_state"
    )
    for pseudonym, category, version, sha256, anchor_state in versions:
        key = f"{pseudonym}|{category}"
        if key not in latest or version > latest[key][0]:
            latest[key] = (version, sha256, anchor_state == AnchorState.ANCHORED)
    unchanged = all(key in latest and latest[key][1:] == (sha256, True) for key, sha256 in records.items())
    return len(records) if unchanged else None


def _demo_records_seeded_note(*, bodies: list[bytes], records: dict[str, str]) -> None:
    """Note which versions (pseudonym|category: sha256) ingesting `bodies` left, all anchored (see above)."""
    path = _demo_seed_note_path()
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps({"bundles_sha256": _bundles_digest(bodies), "records": records}))
    temporary.replace(path)


def demo_consent_terms() -> dict[str, list[tuple[str, str]]]:
    """Per demo dataset, the (purpose, category) of each declared model that reads it: three demo patients in
    four consent to the demo clinician running those models, so that a clinician's analysis over "everyone who
    consented to me" has a cohort (and refusals) from the start."""
    terms: dict[str, list[tuple[str, str]]] = {}
    for declaration in catalogue():
        terms.setdefault(declaration.dataset, []).append((declaration.purpose, declaration.category))
    return terms


def _demo_consents(*, count: int, clinician: Any) -> int:
    """Give every other demo patient an account (no usable password) and grant, as that patient, the
    demo clinician consent for a year. Idempotent: patients with a consent to the clinician are skipped."""
    from datetime import timedelta

    from django.utils import timezone

    from consent.selectors import consents_of_patient
    from consent.services import consent_grant, consent_grant_document
    from health_platform import bootstrap
    from health_platform.software_passkey import SoftwareSigner

    # The demo patients who never sign in consent with a passkey held in software for the demo, thrown away after:
    # their consents are signed like any other, and no one can sign for them again.
    signer = SoftwareSigner(bootstrap.contracts())
    grantee = clinician.clinician_profile.grantee_id
    linked = {username for username, _role, patient in DEMO_USERS if patient is not None}
    granted = 0
    for dataset, terms in demo_consent_terms().items():
        for demo in demo_patients(dataset=dataset, count=count):
            if demo.row % 4 == 3:
                continue
            patient = Patient.objects.get(pseudonym=patient_pseudonym(demo.patient_key))
            if patient.user is not None and patient.user.get_username() in linked:
                continue  # the printed demo patients grant for themselves in the portal
            if consents_of_patient(patient=patient).filter(grantee=grantee).exists():
                continue
            user = patient.user
            if user is None:
                user = _demo_user(username=f"demo-{demo.identifier}", role=Role.PATIENT, password_hash=None)
                patient_link_user(patient=patient, user=user)
            now = timezone.now()
            document = consent_grant_document(
                actor=user,
                patient=patient,
                grantee_id=grantee,
                purposes=sorted({purpose for purpose, _ in terms}),
                categories=sorted({category for _, category in terms}),
                valid_from=now,
                valid_until=now + timedelta(days=365),
            )
            signature = signer.passkey(patient.pseudonym).sign(document)
            consent_grant(actor=user, patient=patient, document=document, signature=signature)
            granted += 1
    return granted
