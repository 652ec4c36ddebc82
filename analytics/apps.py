from typing import Any

from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"

    def ready(self) -> None:
        from analytics import services
        from records.services import patient_erasure_check, patient_erasure_destroy

        def check(sender: Any, *, patient: Any, **_: Any) -> None:
            services.analysis_erasure_check(patient=patient)

        def destroy(sender: Any, *, patient: Any, record_ids: list[str], **_: Any) -> None:
            services.analysis_blobs_erase(patient=patient, record_ids=record_ids)

        patient_erasure_check.connect(check, weak=False, dispatch_uid="analytics_erasure_check")
        patient_erasure_destroy.connect(destroy, weak=False, dispatch_uid="analytics_erasure_destroy")
