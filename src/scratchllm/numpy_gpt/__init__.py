"""A GPT built and trained with NumPy alone: no torch import anywhere in this package.

The same model as ``scratchllm.models.GPT`` (the same ``GPTConfig``, parameter names and
checkpoint directory), written as small pieces with hand-derived backward passes, in the
order the source lists them:

- ``positions.sinusoidal_positions``: the fixed position table
- ``attention.attention_head`` and ``attention.multi_head_attention``
- ``masks.look_ahead_mask`` and ``masks.padding_mask``
- ``layer_norm.layer_norm``, ``mlp.mlp`` (``activations``), ``block.block``
- ``output.output_layer`` and ``output.cross_entropy``

then ``model.NumpyGPT`` (forward, backward, KV-cache decoding), ``generate`` (greedy and
sampling), ``optim`` (AdamW, the PyTorch Trainer's update), ``data`` (the Trainer's
batches) and ``trainer.NumpyTrainer`` (checkpoints, resume, metrics). ``docs/numpy-gpt.md``
puts each piece's maths beside its code.

>>> from scratchllm.configs import GPTConfig
>>> model = NumpyGPT(GPTConfig(n_layer=1, n_head=2, n_embd=8, block_size=8, vocab_size=5))
>>> generate(model, [[1, 2]], max_new_tokens=3, temperature=0).shape
(1, 5)
"""

from scratchllm.numpy_gpt.generate import generate
from scratchllm.numpy_gpt.io import load_model, read_gpt_config, save_model
from scratchllm.numpy_gpt.model import NumpyGPT, check_supported, init_parameters, parameter_names

__all__ = [
    "NumpyGPT",
    "check_supported",
    "generate",
    "init_parameters",
    "load_model",
    "parameter_names",
    "read_gpt_config",
    "save_model",
]
