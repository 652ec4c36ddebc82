"""Plain words first, codes behind: how the portal shows the vocabulary's labels to people.

The vocabulary's labels carry their code system at the end, in brackets ("Treatment of the patient
(HL7 v3 TREAT)", "Health research (GA4GH DUO:0000042, HL7 v3 HRESCH)"): exact for an auditor, noise for a
patient. `plain_words` keeps the words; `label_codes` the bracketed codes, which the pages put behind a
<details> element. Units written in UCUM's notation (`[arb'U]`) are shown in words by `unit_words`.
"""

import re
from collections.abc import Mapping

_TRAILING_CODES = re.compile(r"^(?P<words>.*?)\s*\((?P<codes>[^()]*)\)\s*$")

# UCUM codes of the demo's code system (records/codes.py) and the common clinical ones, as a person reads them.
UNIT_WORDS: dict[str, str] = {
    "[arb'U]": "image units",
    "[arb'U]2": "square image units",
    "1": "",
    "kg": "kg",
    "kg/m2": "kg/m²",
    "mm[Hg]": "mmHg",
    "mg/dL": "mg/dL",
    "mmol/L": "mmol/L",
    "a": "years",
    "Cel": "°C",
    "/min": "per minute",
    "%": "%",
}


def plain_words(label: str) -> str:
    """The label without its trailing bracketed codes: "Treatment of the patient"."""
    match = _TRAILING_CODES.match(label)
    return match.group("words") if match and match.group("words") else label


def label_codes(label: str) -> str:
    """The label's trailing bracketed codes ("HL7 v3 TREAT"), or "" when it has none."""
    match = _TRAILING_CODES.match(label)
    return match.group("codes") if match and match.group("words") else ""


def unit_words(unit: str) -> str:
    """A unit as a person reads it: `[arb'U]` is "image units", a dimensionless "1" nothing at all."""
    if unit in UNIT_WORDS:
        return UNIT_WORDS[unit]
    if "[" in unit or "{" in unit:  # an annotation or special unit left in UCUM's notation: say no more than it
        return re.sub(r"[\[\]{}']", "", unit)
    return unit


def failure_words(code: str, known: Mapping[str, str], *, rejected: str, otherwise: str) -> str:
    """What a person reads for a failed job's code (an analysis's, a training run's; the code is shown beside it):
    the job's own words for it, `rejected` for any refusal by the ledger (ledger_rejected_<reason>), else
    `otherwise`."""
    if code in known:
        return known[code]
    if code.startswith("ledger_rejected"):
        return rejected
    return otherwise
