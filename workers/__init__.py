"""Celery app and thin idempotent tasks; in embedded mode they run in-process."""
