"""Prefect flows: each composes tasks and branches only on typed decision values."""
