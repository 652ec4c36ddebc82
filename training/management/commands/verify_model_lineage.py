import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from health_platform.commands import PlatformCommand
from health_platform.errors import NotFound, ValidationFailed
from ledger.errors import LedgerError
from training.selectors import LineageVerification, training_run_for_model, training_run_verify

# Exit codes (2 is argparse's, for a command line it cannot parse).
DIFFERENCES_FOUND = 1
UNKNOWN_MODEL = 3
INPUT_REFUSED = 4
LEDGER_FAILED = 5


class Command(PlatformCommand):
    help = (
        "Check a trained model's lineage: the roots the ledger holds for its training run, re-derived from the kept "
        "training manifest and from the ledger's own anchor of every record version the run used, and the model's "
        "weights hash as the run, the model registry and the ledger know it. MODEL is name@version (as the model "
        "card shows it) or the training run's id. Exits 0 when everything agrees; "
        f"{DIFFERENCES_FOUND} when something differs (each field, organisation and record named); {UNKNOWN_MODEL} "
        f"for a model no completed run produced (unknown_model); {INPUT_REFUSED} for a MODEL that is neither "
        f"(invalid_model); {LEDGER_FAILED} when the ledger did not answer (try again)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", help="name@version, or the training run's id")
        parser.add_argument("--json", action="store_true", help="print the result as JSON (ids and field names only)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            verification = training_run_verify(run=training_run_for_model(model=options["model"]))
        except NotFound as error:
            raise CommandError(f"{error.code}: {error.message}", returncode=UNKNOWN_MODEL) from None
        except ValidationFailed as error:
            raise CommandError(f"{error.code}: {error.message}", returncode=INPUT_REFUSED) from None
        except LedgerError as error:
            raise CommandError(f"{error.code}: {error.as_dict()['message']}", returncode=LEDGER_FAILED) from None
        if options["json"]:
            self.stdout.write(json.dumps(verification.as_dict(), indent=2, sort_keys=True))
        else:
            self.stdout.write("\n".join(_summary(verification)))
        if not verification.ok:
            raise CommandError("the lineage differs (see above)", returncode=DIFFERENCES_FOUND)


def _summary(verification: LineageVerification) -> list[str]:
    head = (
        f"{verification.model} (training run {verification.run_id}, lineage transaction "
        f"{verification.lineage_tx_id or '-'}): {verification.records_checked} records of "
        f"{len(verification.organisations)} organisations checked against the ledger."
    )
    if verification.ok:
        return [head, "OK: the ledger's lineage, the kept manifest, the anchors and the model registry agree."]
    lines = [head, "DIFFERS:"]
    lines += [f"  field {name}" for name in verification.differences]
    for organisation, records in sorted(verification.records_differing.items()):
        for record in records:
            lines.append(
                f"  {organisation} record {record['record_id']} version {record['version']}: "
                f"its anchor on the ledger {'is missing' if record['anchor'] == 'missing' else 'differs'}"
            )
    return lines
