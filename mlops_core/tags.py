"""The names the project writes into MLflow, defined once: aliases, run tags, model tags.

Other code and outside checks read these names (``../shared/DESIGN.md`` lists the contract ones:
the aliases, ``mlops.run_type``, ``mlops.batch_sha256``, ``mlops.decision``, ``mlops.reasons``),
so every writer and reader imports them from here rather than spelling them again.
"""

from __future__ import annotations

# Aliases of a dataset's registered model: the roles a version can hold.
CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
ALIASES = (CHAMPION, CHALLENGER, PREVIOUS)

# Tags on every run the project writes.
RUN_TYPE = "mlops.run_type"  # monitor, train, evaluate, rollout, decision
BATCH_SHA256 = "mlops.batch_sha256"
PARENT_RUN = "mlflow.parentRunId"  # MLflow's own: nests train/evaluate/rollout under a decision

# Tags on decision runs.
DECISION = "mlops.decision"  # none, watch, retrain, rollback (promote/retrain when manual)
REASONS = "mlops.reasons"
DECISION_KEY = "mlops.decision_key"  # kind:sha256, so a batch's decision is recorded once
SUPERSEDED = "mlops.superseded"
MANUAL = "mlops.manual"
CONTEXT = "mlops.context"
BATCHES = "mlops.batches"
LABELS_FOR = "mlops.labels_for"
CHAMPION_VERSION = "mlops.champion_version"
RETRAIN = "mlops.retrain"  # the gated subflow's outcome, added after the decision
RETRAIN_REASON = "mlops.retrain_reason"
ROLLBACK = "mlops.rollback"

# Tags on train, evaluate and rollout runs, and on model versions.
MODEL_VERSION = "mlops.model_version"
TRAIN_RUN = "mlops.train_run_id"
DECISION_RUN = "mlops.decision_run_id"
GATE_RUN = "mlops.gate_run_id"
GATES = "mlops.gates"  # passed / failed
GATE_ONLY = "mlops.gate_only"  # `mlops train --gate-only`: a CI check, never a retrain
TRAINING_BATCHES = "mlops.training_batches"
DATA_UNTIL = "mlops.data_until"  # the newest event time in a model's training data
WINDOW = "mlops.window"  # the training window chosen (mlops_core.windows)
CONCEPT_SINCE = "mlops.concept_since"  # where the concept a model learnt began (a change point)

# The rollout state, as tags on the registered model (every server replica converges on it);
# a rollout run carries the step and mode under the same names, and its verdict.
ROLLOUT_MODE = "mlops.rollout.mode"
ROLLOUT_WEIGHT = "mlops.rollout.weight"
ROLLOUT_VERSION = "mlops.rollout.version"
ROLLOUT_STEP = "mlops.rollout.step"
ROLLOUT_SINCE = "mlops.rollout.since"  # when the current step began (Unix seconds)
ROLLOUT_TAGS = (ROLLOUT_MODE, ROLLOUT_WEIGHT, ROLLOUT_VERSION, ROLLOUT_STEP)
ROLLOUT_VERDICT = "mlops.rollout.verdict"

# MLflow caps a tag's value; reasons are cut to this many characters.
TAG_VALUE_LIMIT = 5000
