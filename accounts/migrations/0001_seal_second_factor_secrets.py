"""Seal the second-factor secrets allauth stored in the clear before accounts.adapter.MFAAdapter sealed them:
each TOTP secret, each recovery-code seed (and the codes of a set migrated from an older allauth)."""

from django.db import migrations

from accounts.adapter import SEALED_PREFIX, second_factor_secret_open, second_factor_secret_seal

FIELDS = {"totp": ("secret",), "recovery_codes": ("seed",)}


def _rewrite(apps, schema_editor, *, sealing: bool) -> None:
    Authenticator = apps.get_model("mfa", "Authenticator")
    for authenticator in Authenticator.objects.filter(type__in=FIELDS).iterator():
        data = dict(authenticator.data)

        def rewritten(value: str) -> str:
            if value.startswith(SEALED_PREFIX) == sealing:
                return value  # already as wanted
            return second_factor_secret_seal(value) if sealing else second_factor_secret_open(value)

        for field in FIELDS[authenticator.type]:
            if isinstance(data.get(field), str):
                data[field] = rewritten(data[field])
        if isinstance(data.get("migrated_codes"), list):
            data["migrated_codes"] = [rewritten(code) for code in data["migrated_codes"]]
        if data != authenticator.data:
            authenticator.data = data
            authenticator.save(update_fields=["data"])


def seal(apps, schema_editor) -> None:
    _rewrite(apps, schema_editor, sealing=True)


def unseal(apps, schema_editor) -> None:
    _rewrite(apps, schema_editor, sealing=False)


class Migration(migrations.Migration):
    dependencies = [('mfa', '0003_authenticator_type_uniq')]

    operations = [
        migrations.RunPython(seal, unseal),
    ]
