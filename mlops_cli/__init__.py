"""The ``mlops`` command: the one entry point above flows, tasks and the core."""
