"""Writes: the custodian's directory (clinicians, organisations, their status on the ledger) and patient enrolment.

Grantees: adding one registers it on the ledger (health_platform.services); deactivating or reactivating it is a
ledger transaction the gate reads at its next batch. Adding a clinician (or a model steward, who is no grantee)
creates their account without a usable password and e-mails them a link to choose one (Django's password-reset
token: single use, since the password it sets changes what the token is computed over, and expiring after
PASSWORD_RESET_TIMEOUT).

Patients: an invitation is a random token (100 bits, Crockford base32, shown as 5 groups of 4 for a desk
hand-over) whose SHA-256 alone is stored. A patient has at most one pending invitation (issuing another revokes
the earlier ones) and at most one account: enrolment creates the account, links it to the patient and marks the
invitation used, in one database transaction under the invitation's row lock, or does nothing at all.
"""

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.services import second_factor_reset
from directory.models import InvitationState, PatientInvitation
from health_platform.errors import ApplicationError, Conflict, NotFound, ValidationFailed
from health_platform.models import ClinicianProfile, Organisation
from health_platform.roles import Role, role_group
from health_platform.services import clinician_register, grantee_set_active, organisation_create
from records.models import Patient
from records.selectors import patient_by_identifier
from records.services import patient_link_user

log = structlog.get_logger(__name__)

TOKEN_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # noqa: S105 (an alphabet) Crockford base32: no I, L, O, U
TOKEN_LENGTH = 20  # 100 bits
_TOKEN_FORM = re.compile(rf"[{TOKEN_ALPHABET}]{{{TOKEN_LENGTH}}}")
_CONFUSABLE = str.maketrans({"O": "0", "I": "1", "L": "1"})
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
MAX_TEXT = 200


class InvitationRefused(ApplicationError):
    """An enrolment link or code that cannot be used; `code` says why (stable, shown on the refusal page)."""

    status = 410
    message = "This invitation cannot be used."


INVITATION_REFUSALS: dict[str, tuple[int, str]] = {
    "invitation_invalid": (
        404,
        "This invitation link or code is not valid. Check it, or ask the hospital for a new one.",
    ),
    "invitation_used": (410, "This invitation has already been used. Sign in with the account you created."),
    "invitation_expired": (410, "This invitation has expired. Ask the hospital for a new one."),
    "invitation_revoked": (410, "This invitation was withdrawn. Ask the hospital for a new one."),
    "patient_already_enrolled": (409, "An account already exists for this patient. Sign in with it."),
}


def _refusal(code: str) -> InvitationRefused:
    status, message = INVITATION_REFUSALS[code]
    error = InvitationRefused(message, code=code)
    error.status = status
    return error


def token_normalise(text: Any) -> str | None:
    """The token a link or a typed code carries, in its canonical form; None if it cannot be one."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    token = re.sub(r"[\s-]", "", text).upper().translate(_CONFUSABLE)
    return token if _TOKEN_FORM.fullmatch(token) else None


def token_display(token: str) -> str:
    return "-".join(token[index : index + 4] for index in range(0, len(token), 4))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedInvitation:
    """An invitation just issued, with the token (never stored: shown or sent once)."""

    invitation: PatientInvitation
    token: str
    link: str

    @property
    def code(self) -> str:
        return token_display(self.token)


# --- patient invitations -----------------------------------------------------------------------------


def patient_invitation_issue(
    *, actor: Any, identifier_system: str, identifier_value: str, email: str = "", base_url: str
) -> IssuedInvitation:
    """Invite the person behind an ingested patient identifier: revoke their pending invitations, store a new one
    (its token's hash), and e-mail the link when `email` is given (else the caller shows the code once).

    Refused: patient_not_found (no ingested patient has this identifier), patient_already_enrolled.
    """
    for name, value in (("identifier_system", identifier_system), ("identifier_value", identifier_value)):
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
            raise ValidationFailed("Give the patient's identifier system and value.", detail={"field": name})
    patient = patient_by_identifier(system=identifier_system.strip(), value=identifier_value.strip())
    if patient is None:
        raise NotFound("No ingested patient has this identifier.", code="patient_not_found")
    return _issue(actor=actor, patient=patient, email=email, base_url=base_url)


def patient_invitation_reissue(
    *, actor: Any, invitation: PatientInvitation, email: str = "", base_url: str
) -> IssuedInvitation:
    """A new invitation for the same patient (the earlier ones are revoked)."""
    return _issue(actor=actor, patient=invitation.patient, email=email, base_url=base_url)


def _issue(*, actor: Any, patient: Patient, email: str, base_url: str) -> IssuedInvitation:
    email = (email or "").strip()
    if email:
        _check_email(email)
    token = "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))
    with transaction.atomic():
        locked = Patient.objects.select_for_update().get(pk=patient.pk)
        if locked.user_id is not None:
            raise Conflict("An account already exists for this patient.", code="patient_already_enrolled")
        now = timezone.now()
        PatientInvitation.objects.filter(patient=locked, used_at=None, revoked_at=None).update(revoked_at=now)
        invitation = PatientInvitation.objects.create(
            patient=locked,
            token_sha256=_digest(token),
            by_email=bool(email),
            created_by=actor if getattr(actor, "pk", None) else None,
            expires_at=now + timedelta(hours=settings.DIRECTORY_INVITATION_HOURS),
        )
        link = base_url.rstrip("/") + reverse("enrol:link", kwargs={"token": token})
        if email:
            send_mail(
                subject="Create your health_platform account",
                message=(
                    "You have been invited to create your account on the hospital's health_platform portal.\n\n"
                    f"Follow this link to choose your username and password:\n{link}\n\n"
                    f"Or enter this code at {base_url.rstrip('/')}{reverse('enrol:start')}: {token_display(token)}\n\n"
                    f"The invitation can be used once and expires on {invitation.expires_at:%Y-%m-%d %H:%M} UTC.\n"
                    "If you did not expect it, ignore this message.\n"
                ),
                from_email=None,
                recipient_list=[email],
            )
    log.info(
        "patient_invitation_issued", invitation_id=str(invitation.id), patient_id=str(patient.pk), by_email=bool(email)
    )
    return IssuedInvitation(invitation=invitation, token=token, link=link)


def patient_invitation_revoke(*, actor: Any, invitation: PatientInvitation) -> PatientInvitation:
    """Withdraw a pending invitation (a used or revoked one is left as it is)."""
    PatientInvitation.objects.filter(pk=invitation.pk, used_at=None, revoked_at=None).update(revoked_at=timezone.now())
    invitation.refresh_from_db()
    log.info("patient_invitation_revoked", invitation_id=str(invitation.id), user_id=getattr(actor, "pk", None))
    return invitation


def invitation_check(*, token_text: Any) -> PatientInvitation:
    """The pending invitation a link or code names, or InvitationRefused with why. Writes nothing."""
    token = token_normalise(token_text)
    invitation = None if token is None else PatientInvitation.objects.filter(token_sha256=_digest(token)).first()
    return _usable(invitation)


def _usable(invitation: PatientInvitation | None) -> PatientInvitation:
    if invitation is None:
        raise _refusal("invitation_invalid")
    state = invitation.state
    if state != InvitationState.PENDING:
        raise _refusal(f"invitation_{state}")
    if Patient.objects.filter(pk=invitation.patient_id, user__isnull=False).exists():
        raise _refusal("patient_already_enrolled")
    return invitation


def patient_enrol(*, token_text: Any, username: str, password: str, password_again: str) -> Any:
    """Create the patient's account from an invitation: the user (patient role), linked to the patient's records;
    the invitation is marked used. All or nothing, under the invitation's row lock, so a link used twice at once
    creates one account. Raises InvitationRefused, or ValidationFailed naming the field."""
    token = token_normalise(token_text)
    user_model = get_user_model()
    with transaction.atomic():
        found = None
        if token is not None:
            found = PatientInvitation.objects.select_for_update().filter(token_sha256=_digest(token)).first()
        invitation = _usable(found)
        candidate = _user_candidate(
            username, refusal="Choose a username of at most 150 letters, digits and @.+-_ characters."
        )
        username = candidate.username
        if user_model.objects.filter(username__iexact=username).exists():
            raise ValidationFailed(
                "This username is taken; choose another.", code="username_taken", detail={"field": "username"}
            )
        if not isinstance(password, str) or password != password_again:
            raise ValidationFailed(
                "The two passwords differ.", code="password_mismatch", detail={"field": "password_again"}
            )
        try:
            validate_password(password, user=candidate)
        except ValidationError as error:
            raise ValidationFailed(
                " ".join(error.messages), code="password_too_weak", detail={"field": "password"}
            ) from None
        try:
            user = user_model.objects.create_user(username=username, password=password)
        except IntegrityError:
            raise ValidationFailed(
                "This username is taken; choose another.", code="username_taken", detail={"field": "username"}
            ) from None
        user.groups.add(role_group(Role.PATIENT))
        patient_link_user(patient=invitation.patient, user=user)
        PatientInvitation.objects.filter(pk=invitation.pk).update(used_at=timezone.now(), enrolled_user=user)
    log.info("patient_enrolled", invitation_id=str(invitation.id), user_id=user.pk)
    return user


# --- the grantee directory ------------------------------------------------------------------------------------


def directory_organisation_add(*, actor: Any, slug: str, name: str) -> Organisation:
    """Add an organisation to the directory (registered on the ledger as active). Refused if the slug exists."""
    if not isinstance(slug, str) or not SLUG.fullmatch(slug):
        raise ValidationFailed(
            "The short name must be lower-case letters, digits and -, at most 63.",
            code="invalid_slug",
            detail={"field": "slug"},
        )
    name = _text(name, "name")
    if Organisation.objects.filter(slug=slug).exists():
        raise Conflict(
            "An organisation with this short name exists.", code="organisation_exists", detail={"field": "slug"}
        )
    organisation = organisation_create(slug=slug, name=name)
    log.info("directory_organisation_added", organisation_id=organisation.pk, user_id=getattr(actor, "pk", None))
    return organisation


def directory_clinician_invite(
    *, actor: Any, username: str, display_name: str, email: str, organisation_slug: str = "", base_url: str
) -> ClinicianProfile:
    """Add a clinician: their account (no usable password yet), their grantee identity on the ledger, and an e-mail
    with a link to choose their password. All or nothing: if the ledger or the mail server fails, nothing is kept."""
    display_name = _text(display_name, "display_name")
    _check_email(email)
    organisation = None
    if organisation_slug:
        organisation = Organisation.objects.filter(slug=organisation_slug).first()
        if organisation is None:
            raise ValidationFailed(
                "No such organisation.", code="unknown_organisation", detail={"field": "organisation"}
            )
    with transaction.atomic():
        user = _staff_account_create(username=username, email=email)
        profile = clinician_register(user=user, display_name=display_name, organisation=organisation)
        _staff_welcome_send(user=user, base_url=base_url)
    log.info("directory_clinician_added", clinician_id=profile.public_id, user_id=getattr(actor, "pk", None))
    return profile


def directory_model_steward_invite(*, actor: Any, username: str, email: str, base_url: str) -> Any:
    """Add a model steward: their account (no usable password yet, the model steward role) and an e-mail with a link
    to choose their password, as for a clinician. A steward is no grantee: nothing is written to the ledger; like all
    staff they enrol a second factor at their first sign-in. All or nothing: if the mail server fails, nothing is
    kept."""
    _check_email(email)
    with transaction.atomic():
        user = _staff_account_create(username=username, email=email)
        user.groups.add(role_group(Role.MODEL_STEWARD))
        _staff_welcome_send(user=user, base_url=base_url)
    log.info("directory_model_steward_added", steward_user_id=user.pk, user_id=getattr(actor, "pk", None))
    return user


def _staff_account_create(*, username: Any, email: str) -> Any:
    """A new member of staff's account, without a usable password. Refused: invalid_username, username_taken.
    Must be called inside the transaction that also sends their welcome (a failed e-mail keeps no account)."""
    user_model = get_user_model()
    username = _user_candidate(
        username, email=email, refusal="A username is at most 150 letters, digits and @.+-_ characters."
    ).username
    if user_model.objects.filter(username__iexact=username).exists():
        raise Conflict("This username is taken.", code="username_taken", detail={"field": "username"})
    return user_model.objects.create_user(username=username, email=email, password=None)


def _staff_welcome_send(*, user: Any, base_url: str) -> None:
    """E-mail a new member of staff their username and the single-use link to choose their password."""
    link = base_url.rstrip("/") + reverse(
        "enrol:staff",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )
    send_mail(
        subject="Your health_platform account",
        message=(
            "An account has been created for you on the hospital's health_platform portal.\n\n"
            f"Your username: {user.get_username()}\nChoose your password here (the link works once):\n{link}\n"
        ),
        from_email=None,
        recipient_list=[user.email],
    )


def directory_grantee_set_active(*, actor: Any, grantee_id: str, active: bool) -> Any:
    """Deactivate or reactivate a grantee of the directory (on the ledger first). Refused: unknown_grantee."""
    if not isinstance(grantee_id, str) or not _directory_has(grantee_id):
        raise NotFound("No such clinician or organisation in the directory.", code="unknown_grantee")
    status = grantee_set_active(grantee_id=grantee_id, active=active)
    log.info("directory_grantee_status", grantee=grantee_id, active=active, user_id=getattr(actor, "pk", None))
    return status


def directory_second_factor_reset(*, actor: Any, grantee_id: str) -> ClinicianProfile:
    """Reset the lost second factor of a clinician of the directory (accounts.services.second_factor_reset).
    Refused: unknown_clinician (no clinician with this grantee id; organisations have no account)."""
    kind, _, key = grantee_id.partition(":") if isinstance(grantee_id, str) else ("", "", "")
    profiles = ClinicianProfile.objects.select_related("user")
    profile = profiles.filter(public_id=key).first() if kind == "clinician" else None
    if profile is None:
        raise NotFound("No such clinician in the directory.", code="unknown_clinician")
    second_factor_reset(user=profile.user, actor=actor)
    log.info("directory_second_factor_reset", clinician_id=profile.public_id, user_id=getattr(actor, "pk", None))
    return profile


def _directory_has(grantee_id: str) -> bool:
    kind, _, key = grantee_id.partition(":")
    if kind == "clinician":
        return ClinicianProfile.objects.filter(public_id=key).exists()
    if kind == "org":
        return Organisation.objects.filter(slug=key).exists()
    return False


def _user_candidate(username: Any, *, email: str = "", refusal: str) -> Any:
    """An unsaved user with the username stripped, checked as the user model checks it (uniqueness aside: the
    caller checks that under its transaction). Refused with invalid_username, worded as `refusal`."""
    user_model = get_user_model()
    candidate = user_model(username=username.strip() if isinstance(username, str) else "", email=email)
    try:
        candidate.full_clean(validate_unique=False, exclude=["password"])
    except ValidationError:
        raise ValidationFailed(refusal, code="invalid_username", detail={"field": "username"}) from None
    return candidate


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT or any(ord(c) < 32 for c in value):
        raise ValidationFailed(
            f"Give a {field.replace('_', ' ')} of at most {MAX_TEXT} characters.", detail={"field": field}
        )
    return value.strip()


def _check_email(email: Any) -> None:
    from django.core.validators import validate_email

    try:
        if not isinstance(email, str) or len(email) > 254:
            raise ValidationError("invalid")
        validate_email(email)
    except ValidationError:
        raise ValidationFailed(
            "Give a valid e-mail address.", code="invalid_email", detail={"field": "email"}
        ) from None


def staff_password_set_check(*, uidb64: str, token: str) -> Any:
    """The member of staff whose welcome link this is, or InvitationRefused(invitation_invalid)."""
    from django.utils.http import urlsafe_base64_decode

    user_model = get_user_model()
    try:
        user = user_model.objects.get(pk=int(urlsafe_base64_decode(uidb64).decode()))
    except (ValueError, TypeError, OverflowError, user_model.DoesNotExist):
        raise _refusal("invitation_invalid") from None
    if not default_token_generator.check_token(user, token):
        raise _refusal("invitation_invalid")
    return user
