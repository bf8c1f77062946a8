"""Moved to ``scratchllm.checkpoint`` (checkpoints are read by sampling, evaluation and
inspection too, which sit below training); this name stays for code written before."""

from scratchllm.checkpoint import (  # noqa: F401
    BEST,
    LAST,
    STATE_FORMAT,
    STATE_JSON,
    STATE_TENSORS,
    Checkpoint,
    find_checkpoint,
    load_checkpoint,
    read_trainer_state,
    recover,
    save_checkpoint,
)
