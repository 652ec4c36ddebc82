"""The account pages the platform adds to allauth's: the personal API token."""

import structlog
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods
from rest_framework.authtoken.models import Token

from health_platform.second_factor import second_factor_required, session_passed_second_factor

log = structlog.get_logger(__name__)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def personal_token(request: HttpRequest) -> HttpResponse:
    """Create (or replace) and revoke one's API token. Staff need a session that passed the second factor:
    a password alone never yields a staff token. The key is shown once, right after it is created."""
    user = request.user
    allowed = not second_factor_required(user) or session_passed_second_factor(request)
    existing = Token.objects.filter(user=user).first()
    if request.method == "POST" and allowed:
        Token.objects.filter(user=user).delete()
        if request.POST.get("action") == "create":
            created = Token.objects.create(user=user)
            log.info("personal_token_created", user_id=user.pk)
            return render(
                request, "account/personal_token.html", {"allowed": True, "token": created, "new_key": created.key}
            )
        log.info("personal_token_revoked", user_id=user.pk)
        return redirect("account_personal_token")
    status = 200 if allowed or request.method != "POST" else 403
    return render(request, "account/personal_token.html", {"allowed": allowed, "token": existing}, status=status)
