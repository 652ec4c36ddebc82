"""What every app's portal views share."""

from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any, TypeVar

import structlog
from django import forms
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET
from django_htmx.http import HttpResponseClientRedirect

from health_platform.fhir_outcomes import error_response_for, path_kind
from ledger.errors import LedgerError

log = structlog.get_logger(__name__)

View = TypeVar("View", bound=Callable[..., Any])
Found = TypeVar("Found")


class ListedChoiceField(forms.ChoiceField):
    """A select of what the form lists for this request (`offer`), after a blank "Choose…", described by the help
    whose id is `help_id` (the list templates/_field.html shows as its help_template). No choice, or one not listed,
    is refused with "Choose <what>." or "Choose <what> from the list."."""

    def __init__(self, *, label: str, help_id: str, what: str) -> None:
        super().__init__(
            label=label,
            widget=forms.Select(attrs={"aria-describedby": help_id}),
            error_messages={"required": f"Choose {what}.", "invalid_choice": f"Choose {what} from the list."},
        )

    def offer(self, choices: Iterable[tuple[str, str]]) -> None:
        self.choices = [("", "Choose…"), *choices]


def object_view(
    lookup: Callable[[HttpRequest, str], Found | HttpResponse],
) -> Callable[[Callable[[HttpRequest, Found], HttpResponseBase]], Callable[..., HttpResponseBase]]:
    """A view of one object named by its URL's one argument: `lookup(request, id)` finds it among the user's or
    answers the refusal page (which is returned as is); the view is called with the object found."""

    def decorate(view: Callable[[HttpRequest, Found], HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @wraps(view)
        def resolved(request: HttpRequest, **kwargs: str) -> HttpResponseBase:
            (object_id,) = kwargs.values()
            found = lookup(request, object_id)
            if isinstance(found, HttpResponse):
                return found
            return view(request, found)

        return resolved

    return decorate


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


def object_panel(
    lookup: Callable[[HttpRequest, str], Found | HttpResponse], page: Callable[[Found], str]
) -> Callable[[Callable[[HttpRequest, Found], HttpResponseBase]], Callable[..., HttpResponseBase]]:
    """An htmx panel of one object's page (GET; object_view's lookup, panel_login_required's sign-in). A
    request that is not htmx's (a bookmark, a browser without JavaScript) is sent to `page(object)`."""

    def decorate(view: Callable[[HttpRequest, Found], HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @wraps(view)
        def in_place(request: HttpRequest, found: Found) -> HttpResponseBase:
            if not getattr(request, "htmx", False):
                return redirect(page(found))
            return view(request, found)

        return panel_login_required(require_GET(object_view(lookup)(in_place)))

    return decorate


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


def verdict_posted(
    request: HttpRequest,
    *,
    judge: Callable[[str, str], Any],
    again: Callable[[Any], HttpResponse],
    base: str,
    done: str,
    message: str,
) -> HttpResponse:
    """An auditor's verdict form posted (a review, a triage): `judge(verdict, note)` records it; a refusal of the
    input re-renders the page with it (`again(error)`, 400); another role is 403, an unknown object 404; done, the
    `message` and a redirect to `done`."""
    from django.contrib import messages

    from health_platform.errors import NotFound, ValidationFailed
    from health_platform.roles import Role, user_has_role

    if not user_has_role(request.user, Role.AUDITOR):
        return refused(request, "Only auditors give this verdict.", status=403, base=base)
    try:
        judge(request.POST.get("verdict", ""), request.POST.get("note", ""))
    except NotFound as missing:
        return refused(request, missing.message, status=404, base=base)
    except ValidationFailed as invalid:
        return again(invalid)
    messages.success(request, message)
    return redirect(done)


class OutageMiddleware:
    """A ledger or database outage that reaches the top of a view is answered 503 with Retry-After, in the shape
    of the request: the API's `{"code", "message", "detail"}` JSON under /api/, the portal's styled page
    elsewhere (an alert in place for an htmx panel), never a 500. Nothing was changed: the view's transaction
    is rolled back by Django as the exception leaves it. (DRF views answer API errors themselves; this covers
    the rest.)"""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponseBase | None:
        if isinstance(exception, LedgerError):
            body = exception.as_dict()
            status, retry_after = exception.status, exception.retry_after or 5
            what = "ledger"
        elif isinstance(exception, OperationalError | InterfaceError):  # locked past its timeout, unreachable
            message = "The database did not answer; try again."
            body = {"code": "database_unavailable", "message": message, "detail": None}
            status, retry_after = 503, 5
            what = "database"
        else:
            return None
        log.warning("portal_outage", what=what, code=body["code"], path_kind=path_kind(request))
        api = error_response_for(
            request, status=status, code=body["code"], message=body["message"], detail=body["detail"]
        )
        if api is not None:
            response: HttpResponseBase = api
        elif getattr(request, "htmx", False):
            response = render(request, "_panel_alert.html", {"message": OUTAGE_MESSAGES[what]}, status=status)
        else:
            response = render(request, "unavailable.html", {"message": OUTAGE_MESSAGES[what]}, status=status)
        response["Retry-After"] = str(retry_after)
        return response


OUTAGE_MESSAGES = {
    "ledger": "The ledger is not reachable at the moment, so this page cannot be shown and nothing was changed. "
    "Please try again in a few moments.",
    "database": "The platform's database is not reachable at the moment, so nothing was changed. "
    "Please try again in a few moments.",
}
