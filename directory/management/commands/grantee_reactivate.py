from directory.management.commands.grantee_deactivate import Command as Deactivate


class Command(Deactivate):
    help = "Reactivate a grantee on the ledger (clinician:<id> or org:<slug>)."
    active = True
