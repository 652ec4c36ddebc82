"""What every app's portal views share."""

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
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


def refused(
    request: HttpRequest,
    message: str,
    *,
    status: int,
    base: str,
    back: tuple[str, str] | None = None,
    panel: bool = True,
) -> HttpResponse:
    """A portal view's refusal (403) or miss (404): the message in an alert, in place for an htmx panel, or
    as a page of the app's portal (`base` template) with a way back (`back`: URL and label; the start page
    by default). `panel=False`: a page for htmx requests too (the consent portal's panels select from it)."""
    context = {"message": message}
    if panel and getattr(request, "htmx", False):
        return render(request, "_panel_alert.html", context, status=status)
    url, label = back or (reverse("home"), "Go to your start page")
    title = "Not found" if status == 404 else "Not available"
    return render(
        request,
        "refused.html",
        {**context, "base_template": base, "title": title, "back_url": url, "back_label": label},
        status=status,
    )
