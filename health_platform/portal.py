"""What every app's portal views share."""

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponseBase
from django_htmx.http import HttpResponseClientRedirect

View = TypeVar("View", bound=Callable[..., Any])


def panel_login_required(view: View) -> View:
    """login_required for htmx panels: a signed-out poll sends the whole page to sign in.

    (A plain redirect would be followed by htmx and the sign-in page swapped into the panel.)
    """

    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        htmx = getattr(request, "htmx", None)
        if not request.user.is_authenticated and htmx:
            return HttpResponseClientRedirect(redirect_to_login(htmx.current_url_abs_path or request.path).url)
        return login_required(view)(request, *args, **kwargs)

    return checked  # type: ignore[return-value]
