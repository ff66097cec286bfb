"""Thin Prefect tasks: one IO boundary or one call into ``mlops_core`` each."""
