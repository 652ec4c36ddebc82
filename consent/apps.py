from django.apps import AppConfig


class ConsentConfig(AppConfig):
    name = "consent"

    def ready(self) -> None:
        from allauth.mfa.signals import authenticator_added

        from consent.passkeys import enrol_first_passkey

        authenticator_added.connect(enrol_first_passkey, dispatch_uid="consent.enrol_first_passkey")
