"""Care access: a clinician reads a patient's records for treatment, through the same gate as analyses."""
