from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Identity: allauth's sign-in, e-mail, second factor and single sign-on, fitted to the platform's roles."""

    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"
