"""Domain logic of the MLOps loop: spec, data, validation, drift, policy, training, registry, rollout."""

__version__ = "0.1.0"
