"""The FHIR API's views: DRF views (the platform's authentication: token or session, staff with a second factor;
its permission rules, through the apps' selectors) that answer application/fhir+json and render every error,
the platform's own included, as an OperationOutcome.

Each view declares the parameters it accepts (fhir_api.search): anything else is refused 400, and the
CapabilityStatement is written from the same declarations. Searches are offset-paged over a total order (oldest
first, then by id: a new consent or event lands after the pages already read), so the links of a query are stable.
"""

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeAlias
from urllib.parse import urlencode

import structlog
from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView, set_rollback

from audit.selectors import (
    AccessEventFilters,
    access_events_as_fhir,
    access_events_search,
    access_events_with_fhir_outcome,
)
from consent.selectors import consent_as_fhir, consents_of_patient, consents_readable_by, consents_with_fhir_status
from fhir_api.capability import capability_statement
from fhir_api.search import (
    AUDIT_EVENT_SEARCH,
    CONSENT_SEARCH,
    PAGING,
    SearchParameter,
    moment_condition,
    page_links,
    paging,
    parameters_check,
    period_condition,
    reference_id,
    token_codes,
)
from health_platform.api import exception_handler
from health_platform.errors import NotFound, PermissionDenied
from health_platform.fhir_codes import GRANTEE_SYSTEM, PSEUDONYM_SYSTEM
from health_platform.fhir_outcomes import ERROR_CODE_SYSTEM, FHIR_MEDIA_TYPE, FHIR_PATH_PREFIX, operation_outcome
from records.models import Patient
from records.selectors import patient_of, patient_record_contents

log = structlog.get_logger(__name__)

# The builders below serve the API's views (DRF's Request) and the portal's download (Django's HttpRequest) alike:
# they use only the user and the server's address.
AnyRequest: TypeAlias = HttpRequest | Request

CONSENT_STATES = "http://hl7.org/fhir/consent-state-codes"
AUDIT_OUTCOMES = "http://terminology.hl7.org/CodeSystem/audit-event-outcome"


class FhirJSONRenderer(JSONRenderer):
    media_type = FHIR_MEDIA_TYPE
    format = "fhir+json"
    charset = "utf-8"


class PlainJSONRenderer(JSONRenderer):
    """application/json, for a client that asks for it by name (the body is the same FHIR JSON)."""

    charset = "utf-8"


# `_format` values and the renderer each selects ("+" arrives as a space when a client does not escape it).
_FORMATS: dict[str, type[JSONRenderer]] = {
    "json": FhirJSONRenderer,
    FHIR_MEDIA_TYPE: FhirJSONRenderer,
    FHIR_MEDIA_TYPE.replace("+", " "): FhirJSONRenderer,
    "application/json": PlainJSONRenderer,
}


class FhirContentNegotiation(DefaultContentNegotiation):
    """`_format` first (json, application/json, application/fhir+json), else the Accept header; anything else is
    406. DRF's own `format` parameter means nothing here (the strict parameter check refuses it)."""

    settings = SimpleNamespace(URL_FORMAT_OVERRIDE=None)

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        requested = request.query_params.get("_format")
        if requested is None:
            return super().select_renderer(request, renderers)
        wanted = _FORMATS.get(requested)
        renderer = next((renderer for renderer in renderers if type(renderer) is wanted), None)
        if wanted is None or renderer is None:
            raise NotAcceptable("Only JSON is served: _format json, application/json or application/fhir+json.")
        return renderer, wanted.media_type


def fhir_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """The platform's exception handler (status, code, message, headers), its body written as an OperationOutcome;
    anything it does not know is a 500 OperationOutcome (logged by the exception's type only)."""
    response = exception_handler(exc, context)
    if response is None:
        set_rollback()
        log.error("fhir_server_error", error=type(exc).__name__)
        message = "The server could not answer this request."
        return Response(operation_outcome(status=500, code="server_error", message=message), status=500)
    body = response.data
    response.data = operation_outcome(status=response.status_code, code=body["code"], message=body["message"])
    return response


class FhirView(APIView):
    """GET (and HEAD) only; the parameters in `parameters` (and `_format`) and no others."""

    renderer_classes = (FhirJSONRenderer, PlainJSONRenderer)
    content_negotiation_class = FhirContentNegotiation
    http_method_names = ["get", "head"]
    parameters: tuple[SearchParameter, ...] = ()
    # Not in the OpenAPI schema of /api/: the CapabilityStatement describes this API, and the fuzz (tests/fhir_api)
    # exercises it as schemathesis exercises /api/.
    schema = None

    def get_exception_handler(self) -> Callable[[Exception, dict[str, Any]], Response]:
        return fhir_exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # negotiation (406), authentication (401), permissions (403)
        parameters_check(request.query_params, self.parameters)


def base_url(request: AnyRequest) -> str:
    return request.build_absolute_uri(FHIR_PATH_PREFIX).rstrip("/")


class MetadataView(FhirView):
    """GET /fhir/metadata: the CapabilityStatement (open to anyone, as FHIR clients expect: it holds no data)."""

    permission_classes = (AllowAny,)

    def get(self, request: Request) -> Response:
        return Response(capability_statement(base_url=base_url(request)))


class UnknownView(FhirView):
    """Every other path under /fhir/, whatever the method: 404 (the CapabilityStatement lists what exists)."""

    permission_classes = (AllowAny,)
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options", "trace"]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        raise NotFound("No such FHIR interaction here; /fhir/metadata lists those that exist.")


# --- searchset bundles ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """Part of a searchset: how many entries it holds, and how to fetch `limit` of them from `offset`."""

    total: int
    fetch: Callable[[int, int], list[dict[str, Any]]]


def entry(request: AnyRequest, resource: dict[str, Any], mode: str) -> dict[str, Any]:
    """A searchset entry: its resource's address on this server where it has an id, and why it is there (a
    warning's OperationOutcome is mode outcome)."""
    if resource["resourceType"] == "OperationOutcome":
        return {"resource": resource, "search": {"mode": "outcome"}}
    found: dict[str, Any] = {}
    if resource.get("id"):
        found["fullUrl"] = f"{base_url(request)}/{resource['resourceType']}/{resource['id']}"
    return found | {"resource": resource, "search": {"mode": mode}}


def queryset_section(
    request: AnyRequest,
    objects: QuerySet[Any],
    resources: Callable[[QuerySet[Any]], list[dict[str, Any]]],
    mode: str = "include",
) -> Section:
    return Section(
        total=objects.count(),
        fetch=lambda offset, limit: [entry(request, r, mode) for r in resources(objects[offset : offset + limit])],
    )


def list_section(request: AnyRequest, resources: list[dict[str, Any]], mode: str) -> Section:
    entries = [entry(request, resource, mode) for resource in resources]
    return Section(total=len(entries), fetch=lambda offset, limit: entries[offset : offset + limit])


def searchset(request: Request, sections: list[Section]) -> Response:
    """One page of the sections, one after the other, as a searchset Bundle with its total and paging links."""
    count, offset = paging(request.query_params)
    bundle = searchset_bundle(sections, count=count, offset=offset)
    entries = bundle.pop("entry", None)
    address = request.build_absolute_uri(request.path)
    links = page_links(request.query_params, count=count, offset=offset, total=bundle["total"])
    bundle["link"] = [
        {"relation": relation, "url": f"{address}?{urlencode(link['parameters'])}"} for relation, link in links.items()
    ]
    if entries:
        bundle["entry"] = entries
    return Response(bundle)


def searchset_bundle(sections: list[Section], *, count: int, offset: int) -> dict[str, Any]:
    """`count` entries of the sections from `offset`, one section after the other, as a searchset Bundle with the
    sections' total (and no links: a page adds its own)."""
    total = sum(section.total for section in sections)
    entries: list[dict[str, Any]] = []
    skip = offset
    for section in sections:
        if len(entries) >= count:
            break
        if skip >= section.total:
            skip -= section.total
            continue
        entries += section.fetch(skip, count - len(entries))
        skip = 0
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": total}
    if entries:
        bundle["entry"] = entries
    return bundle


def consents_oldest_first(consents: QuerySet[Any]) -> QuerySet[Any]:
    return consents.select_related("patient").order_by("granted_at", "consent_id")


def consents_fhir(consents: QuerySet[Any]) -> list[dict[str, Any]]:
    return [consent_as_fhir(consent=consent) for consent in consents]


# --- the resources -------------------------------------------------------------------------------


def patient_pseudonym_parameter(request: Request) -> str | None:
    return reference_id(request.query_params, "patient", resource_type="Patient", system=PSEUDONYM_SYSTEM)


class ConsentSearchView(FhirView):
    """GET /fhir/Consent?patient=&status=&period=: the consents the user may list (consent.selectors)."""

    parameters = (*CONSENT_SEARCH, *PAGING)

    def get(self, request: Request) -> Response:
        query = request.query_params
        consents = consents_readable_by(user=request.user)
        pseudonym = patient_pseudonym_parameter(request)
        if pseudonym is not None:
            consents = consents.filter(patient__pseudonym=pseudonym)
        statuses = token_codes(
            query,
            "status",
            system=CONSENT_STATES,
            codes=("draft", "proposed", "active", "rejected", "inactive", "entered-in-error"),
        )
        if statuses is not None:
            consents = consents_with_fhir_status(consents, statuses)
        consents = consents.filter(period_condition(query, "period", ("valid_from", "valid_until")))
        return searchset(request, [queryset_section(request, consents_oldest_first(consents), consents_fhir, "match")])


class ConsentReadView(FhirView):
    """GET /fhir/Consent/<id>: a consent the user may see; any other is 404, as if it did not exist."""

    def get(self, request: Request, consent_id: str) -> Response:
        consents = consents_readable_by(user=request.user)
        consent = None if "\x00" in consent_id else consents.filter(consent_id=consent_id).first()
        if consent is None:
            raise NotFound("No such consent.")
        return Response(consent_as_fhir(consent=consent))


class AuditEventSearchView(FhirView):
    """GET /fhir/AuditEvent?patient=&date=&agent=&outcome=: the access events the user may read (audit.selectors:
    an auditor every one, a patient those about their records; anyone else 403)."""

    parameters = (*AUDIT_EVENT_SEARCH, *PAGING)

    def get(self, request: Request) -> Response:
        query = request.query_params
        filters = AccessEventFilters(
            patient_pseudonym=patient_pseudonym_parameter(request) or "",
            grantee=reference_id(query, "agent", resource_type=None, system=GRANTEE_SYSTEM) or "",
        )
        events = access_events_search(viewer=request.user, filters=filters)
        events = events.filter(moment_condition(query, "date", "recorded_at"))
        outcomes = token_codes(query, "outcome", system=AUDIT_OUTCOMES, codes=("0", "4", "8", "12"))
        if outcomes is not None:
            events = access_events_with_fhir_outcome(events, outcomes)
        return searchset(request, [queryset_section(request, events, access_events_as_fhir, "match")])


def own_patient(request: Request, pseudonym: str) -> Patient:
    """The signed-in patient, when `pseudonym` is theirs. A user who is not a patient is refused 403; a patient
    naming another pseudonym (existing or not) gets 404, which reveals nothing."""
    patient = patient_of(request.user)
    if patient is None:
        raise PermissionDenied("Only a patient reads their own record, with Patient/$everything.")
    if patient.pseudonym != pseudonym:
        raise NotFound("No such patient.")
    return patient


def everything_sections(request: AnyRequest, patient: Patient) -> list[Section]:
    """What Patient/$everything holds, in its order: the Patient (pseudonymous), the Observations of the patient's
    records, their consents, the access events about their records. The patient's download is the same."""
    return [
        list_section(request, [patient_resource(patient)], "match"),
        list_section(request, record_resources(patient), "include"),
        queryset_section(request, consents_oldest_first(consents_of_patient(patient=patient)), consents_fhir),
        queryset_section(
            request,
            access_events_search(viewer=request.user, filters=AccessEventFilters()),
            access_events_as_fhir,
        ),
    ]


class PatientEverythingView(FhirView):
    """GET /fhir/Patient/<pseudonym>/$everything: for the patient themselves, their Patient (pseudonymous), the
    Observations of their records (each record's latest version, decrypted; the subject pointed at that Patient),
    their consents and the access events about their records, in that order, paged (own_patient: 403 or 404 to
    anyone else)."""

    parameters = PAGING

    def get(self, request: Request, pseudonym: str) -> Response:
        return searchset(request, everything_sections(request, own_patient(request, pseudonym)))


def patient_resource(patient: Patient) -> dict[str, Any]:
    """The patient as the platform knows them: by pseudonym, with no direct identifier."""
    return {
        "resourceType": "Patient",
        "id": patient.pseudonym,
        "identifier": [{"system": PSEUDONYM_SYSTEM, "value": patient.pseudonym}],
    }


def record_resources(patient: Patient) -> list[dict[str, Any]]:
    """The Observations of the patient's records (their Patient entries are the ingested identity: the searchset's
    Patient stands for them), or an OperationOutcome warning for a record whose content did not open."""
    resources: list[dict[str, Any]] = []
    for content in patient_record_contents(patient=patient):
        if content.document is None:
            if content.version is not None:
                resources.append(_content_unavailable())
            continue
        for item in content.document.get("entry", []):
            resource = item["resource"]
            if resource.get("resourceType") != "Patient":
                resources.append(resource | {"subject": {"reference": f"Patient/{patient.pseudonym}"}})
    return resources


def _content_unavailable() -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "warning",
                "code": "processing",
                "details": {"coding": [{"system": ERROR_CODE_SYSTEM, "code": "content_unavailable"}]},
                "diagnostics": "One of your records could not be read; it is left out.",
            }
        ],
    }
