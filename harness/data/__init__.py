"""Data: loading JSONL formats, quality checks, PII scrubbing and sealed splits."""
