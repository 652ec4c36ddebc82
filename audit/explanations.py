"""Why an access happened, in plain words for the patient: the consent, the analysis or the emergency declaration
that allowed it, or why the ledger refused it (the patient's "why was my record opened?").

An admitted access always names what allowed it: a consent (reads for treatment and analyses), or an emergency
declaration (reads in an emergency). One that names nothing valid is said to be so, and is an alert by itself
(oversight raises it)."""

from dataclasses import dataclass

from chaincode.vocabulary import EMERGENCY, EMERGENCY_REASONS, EMERGENCY_VERDICTS, PATIENT_REQUEST, REASON_LABELS


@dataclass(frozen=True)
class Context:
    """What the words need besides the event: who acted, the model's name, and for an emergency its reason and
    the auditor's verdict (from the declaration's and the review's events)."""

    who: str
    model: str = ""
    purpose: str = ""
    emergency_reason: str = ""
    verdict: str = ""


def explanation(
    *, kind: str, purpose: str, decision: str, reason: str, consent_id: str, request_id: str, context: Context
) -> str:
    """One sentence (or two) for one access event."""
    refused = f"; the ledger refused it: {_lower(REASON_LABELS.get(reason, reason))}." if decision == "refuse" else ""
    if kind == "record_read" and purpose == EMERGENCY:
        if refused:
            return f"{context.who} asked to open this record in an emergency{refused}"
        if not request_id:
            return _unexplained(context.who)
        why = f" ({_lower(EMERGENCY_REASONS[context.emergency_reason])})" if context.emergency_reason else ""
        return f"{context.who} opened this record without your consent, in an emergency they declared{why}. " + _review(
            context.verdict
        )
    if kind == "record_read":
        if refused:
            return f"{context.who} asked to open this record to treat you{refused}"
        if not consent_id:
            return _unexplained(context.who)
        return f"{context.who} opened this record to treat you, as your consent {consent_id} allows."
    if kind == "record_access":
        what = f"an analysis with {context.model}" if context.model else "an analysis"
        if refused:
            return f"{context.who} asked to use this record in {what}{refused}"
        if not consent_id or not request_id:
            return _unexplained(context.who)
        purpose = f" ({_lower(context.purpose)})" if context.purpose else ""
        return f"{context.who} used this record in {what}{purpose}, as your consent {consent_id} allows."
    if kind == "emergency_declared":
        why = _lower(EMERGENCY_REASONS.get(reason, reason))
        return f"{context.who} declared an emergency to read your records without your consent: {why}."
    if kind == "export" and purpose == PATIENT_REQUEST:
        return "You downloaded your data (your records, consents and the access log about them)."
    if kind == "emergency_review":
        verdict = _lower(EMERGENCY_VERDICTS.get(decision, decision))
        return f"An auditor reviewed an emergency access to your records: {verdict}."
    return ""


def _review(verdict: str) -> str:
    if not verdict:
        return "An auditor will review it."
    return f"An auditor reviewed it: {_lower(EMERGENCY_VERDICTS.get(verdict, verdict))}."


def _unexplained(who: str) -> str:
    return (
        f"{who} used this record, but the log names no consent or emergency that allowed it: the auditors are alerted."
    )


def _lower(label: str) -> str:
    return label[:1].lower() + label[1:]
