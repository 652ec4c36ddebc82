"""The claims the test provider gives about its users, as a hospital's directory would: the e-mail address,
said to be verified (the platform links by verified address only), and the name."""

from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator


class EmailClaimsValidator(OAuth2Validator):
    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        user = request.user
        return {
            "email": user.email,
            "email_verified": True,
            "preferred_username": user.username,
            "name": user.get_full_name() or user.username,
        }
