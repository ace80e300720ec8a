"""Privacy on the device: PII policy (allow / redact / local_only) and detector evaluation.

Light on import: the Presidio detector lives in `duetto.privacy.presidio` (privacy extra).
"""
