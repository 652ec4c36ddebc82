"""allauth's forms, as the platform's clients post them."""

from typing import Any

from allauth.account import forms as allauth_forms


class LoginForm(allauth_forms.LoginForm):
    """allauth's sign-in form (username and password). It also takes the username as `username`, the field name
    of Django's own sign-in form that API clients, scripts and the load test have always posted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        data = kwargs.get("data")
        if data is not None and "login" not in data and "username" in data:
            data = data.copy()
            data["login"] = data["username"]
            kwargs["data"] = data
        super().__init__(*args, **kwargs)
