"""Read-only admin views of record metadata. Ciphertexts are never shown; nothing is edited here
(ingest and anchoring go through records.services)."""

from django.contrib import admin

from records.models import Patient, Record, RecordVersion


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Patient)
class PatientAdmin(ReadOnlyAdmin):
    list_display = ["id", "pseudonym", "user", "created_at"]
    search_fields = ["pseudonym", "user__username"]


@admin.register(Record)
class RecordAdmin(ReadOnlyAdmin):
    list_display = ["id", "patient", "category", "created_at"]
    list_filter = ["category"]


@admin.register(RecordVersion)
class RecordVersionAdmin(ReadOnlyAdmin):
    list_display = ["record", "version", "sha256", "anchor_state", "anchor_tx_id", "anchor_block", "created_at"]
    list_filter = ["anchor_state"]
    exclude = ["ciphertext"]
