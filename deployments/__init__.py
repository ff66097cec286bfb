"""Prefect deployments, event triggers and automations (built in Python from the flows)."""
