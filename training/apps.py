from typing import Any

from django.apps import AppConfig


class TrainingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "training"
    verbose_name = "Federated training with lineage"

    def ready(self) -> None:
        """Follow revocations and erasures (the consent and records apps' signals) to the models they concern."""
        from consent.services import consent_revoked
        from records.services import patient_erasure_destroy
        from training import services

        def revoked(sender: Any, *, consent_id: str, purposes: list[str], **_: Any) -> None:
            services.consent_revoked_follow(consent_id=consent_id, purposes=purposes)

        def erased(sender: Any, *, record_ids: list[str], **_: Any) -> None:
            services.records_erased_follow(record_ids=record_ids)

        consent_revoked.connect(revoked, weak=False, dispatch_uid="training_consent_revoked")
        patient_erasure_destroy.connect(erased, weak=False, dispatch_uid="training_records_erased")
