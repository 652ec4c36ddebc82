"""A real OpenID Connect provider for the single sign-on tests: django-oauth-toolkit in a Django process of its
own, as a hospital's Keycloak or Entra ID would be (tests/accounts/test_single_sign_on.py starts it)."""
