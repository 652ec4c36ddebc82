"""Second-factor secrets are sealed at rest: allauth's TOTP secret and recovery-code seed are stored under
SECOND_FACTOR_KEYS (accounts.adapter.MFAAdapter), never in the clear, and a value not sealed by the platform
is no second factor."""

import base64
import importlib
import os

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP
from django.apps import apps

from accounts.adapter import SEALED_PREFIX, SecondFactorSecretUnreadable, second_factor_secret_open
from health_platform.roles import Role
from tests.clients import TOTP_SECRET, fresh_totp_code, sign_in_with_second_factor
from tests.records.factories import UserFactory

pytestmark = pytest.mark.django_db

seal_migration = importlib.import_module("accounts.migrations.0001_seal_second_factor_secrets")


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _stored(user, kind) -> dict:
    return Authenticator.objects.get(user=user, type=kind).data


def test_a_totp_secret_is_stored_sealed_and_still_signs_in(client):
    user = UserFactory(username="sealed-clinician", roles=[Role.CLINICIAN])  # enrolled with TOTP_SECRET

    stored = _stored(user, Authenticator.Type.TOTP)["secret"]

    assert stored.startswith(SEALED_PREFIX)
    assert TOTP_SECRET not in stored
    assert second_factor_secret_open(stored) == TOTP_SECRET
    assert sign_in_with_second_factor(client, "sealed-clinician").status_code == 302
    assert client.get("/analytics/").status_code == 200


def test_recovery_codes_come_from_a_sealed_seed():
    user = UserFactory(roles=[Role.AUDITOR])
    codes = RecoveryCodes.activate(user).get_unused_codes()

    seed = _stored(user, Authenticator.Type.RECOVERY_CODES)["seed"]

    assert seed.startswith(SEALED_PREFIX)
    assert RecoveryCodes(Authenticator.objects.get(user=user, type="recovery_codes")).validate_code(codes[0])


def test_a_secret_written_in_the_clear_or_altered_is_not_a_second_factor():
    user = UserFactory(roles=[Role.CLINICIAN])
    authenticator = Authenticator.objects.get(user=user, type=Authenticator.Type.TOTP)
    sealed = authenticator.data["secret"]
    body = base64.b64decode(sealed.rsplit(":", 1)[1])
    altered = sealed.rsplit(":", 1)[0] + ":" + base64.b64encode(body[:-1] + bytes([body[-1] ^ 1])).decode()

    for stored in (TOTP_SECRET, altered, f"{SEALED_PREFIX}unknown-key:{sealed.rsplit(':', 1)[1]}", f"{SEALED_PREFIX}x"):
        with pytest.raises(SecondFactorSecretUnreadable):
            second_factor_secret_open(stored)


def test_rotation_keeps_old_secrets_readable_and_seals_new_ones_under_the_active_key(settings):
    old = _key()
    settings.SECOND_FACTOR_KEYS, settings.SECOND_FACTOR_ACTIVE_KEY = f"old:{old}", "old"
    before = UserFactory(roles=[Role.CUSTODIAN])
    settings.SECOND_FACTOR_KEYS, settings.SECOND_FACTOR_ACTIVE_KEY = f"new:{_key()},old:{old}", "new"
    after = UserFactory(roles=[Role.CUSTODIAN])

    assert _stored(before, "totp")["secret"].startswith(f"{SEALED_PREFIX}old:")
    assert _stored(after, "totp")["secret"].startswith(f"{SEALED_PREFIX}new:")
    for user in (before, after):
        totp = TOTP(Authenticator.objects.get(user=user, type="totp"))
        assert totp.validate_code(fresh_totp_code(user.pk))


def test_the_migration_seals_what_an_earlier_version_stored_in_the_clear_and_leaves_sealed_ones_alone():
    user = UserFactory(roles=[Role.CLINICIAN])
    already = _stored(user, "totp")["secret"]
    plain = UserFactory(roles=[Role.AUDITOR])
    Authenticator.objects.filter(user=plain).delete()
    Authenticator.objects.create(user=plain, type="totp", data={"secret": TOTP_SECRET})
    Authenticator.objects.create(
        user=plain, type="recovery_codes", data={"seed": "ab" * 40, "used_mask": 0, "migrated_codes": ["12345678"]}
    )

    seal_migration.seal(apps, None)

    assert _stored(user, "totp")["secret"] == already
    totp = Authenticator.objects.get(user=plain, type="totp")
    assert totp.data["secret"].startswith(SEALED_PREFIX)
    assert TOTP(totp).validate_code(fresh_totp_code(plain.pk))
    recovery = _stored(plain, "recovery_codes")
    assert second_factor_secret_open(recovery["seed"]) == "ab" * 40
    assert [second_factor_secret_open(code) for code in recovery["migrated_codes"]] == ["12345678"]

    seal_migration.unseal(apps, None)  # the way back, for a rollback of the release

    assert _stored(plain, "totp")["secret"] == TOTP_SECRET
