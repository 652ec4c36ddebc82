"""A contract of our own for import-linter (.importlinter): apps reach each other only through their interfaces.

import-linter's own contracts say which packages may import which; this one says which MODULES of another app
may be imported: its services (writes), selectors (reads) and models (for relations and types), plus the few
shared data modules listed in the contract. Everything else of an app (views, api, tasks, its pipeline, forms,
access rules...) is its own business.
"""

from typing import Any

from importlinter import Contract, ContractCheck, fields, output


class AppInterfacesContract(Contract):
    type_name = "app_interfaces"

    apps = fields.ListField(subfield=fields.StringField())
    interfaces = fields.ListField(subfield=fields.StringField())
    shared_modules = fields.ListField(subfield=fields.StringField(), required=False)

    def check(self, graph: Any, verbose: bool) -> ContractCheck:
        apps: list[str] = list(self.apps)  # type: ignore[call-overload]
        interfaces = set(self.interfaces)  # type: ignore[call-overload]
        shared = set(self.shared_modules or ())  # type: ignore[call-overload]
        violations = []
        for app in apps:
            for importer in sorted({app, *graph.find_descendants(app)}):
                for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                    target, _, rest = imported.partition(".")
                    if target not in apps or target == app or imported in shared:
                        continue
                    if rest.split(".")[0] not in interfaces:
                        violations.append((importer, imported))
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for importer, imported in check.metadata["violations"]:
            output.print_error(f"{importer} -> {imported}", bold=False)
            output.new_line()
