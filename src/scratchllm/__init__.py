"""scratchllm: a GPT-style language model built from the ground up."""

__version__ = "0.1.0"
