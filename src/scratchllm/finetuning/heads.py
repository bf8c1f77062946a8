"""Scalar heads on a GPT: the reward model and PPO's value head.

Both read the GPT's last hidden states, the output of its final norm ``ln_f`` ``[B, T, C]``
(what ``lm_head`` turns into logits), through a linear layer ``C -> 1``:

- **reward model** (``RewardModel``): one score per sequence, the head at the **last real
  token** of each row (the last token has read the whole prompt and reply). Trained on
  pairs with Bradley-Terry (``reward.bradley_terry_loss``); its ``lm_head`` is unused.
- **value head** (``ValueHead``): a value at **every** position, ``V(x_<=t)``, the expected
  return from there, for PPO's GAE. It shares the policy's body, as the classic RLHF
  policy with a value head does (Ziegler et al. 2019; TRL's old
  ``AutoModelForCausalLMWithValueHead``), so one forward gives logits and values.

``hidden_states(gpt, x)`` runs the model once and catches ``ln_f``'s output with a forward
hook, so the GPT itself is untouched (and LoRA adapters in it work as they do for logits).

A reward model on disk is a normal GPT checkpoint (``config.json``, ``model.safetensors``,
``tokenizer.json``: ``inspect`` reads it) plus ``reward_head.safetensors`` and
``reward_model.json``, which says what it is.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from scratchllm.files import read_json, write_json

HEAD_FILE = "reward_head.safetensors"
META_FILE = "reward_model.json"
VALUE_FILE = "value_head.safetensors"  # a PPO run's checkpoint: the value head beside the policy


def _final_norm(model: nn.Module) -> nn.Module:
    norm = getattr(getattr(model, "transformer", None), "ln_f", None)
    if norm is None:
        raise ValueError(
            f"a scalar head reads a GPT's final hidden states; {type(model).__name__} has no "
            "transformer.ln_f (start the reward model or PPO from a GPT checkpoint)"
        )
    return norm


def hidden_states(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits [B, T, V], hidden [B, T, C])`` of a GPT on ids ``x [B, T]``."""
    caught: list[torch.Tensor] = []
    handle = _final_norm(model).register_forward_hook(lambda m, i, out: caught.append(out))
    try:
        logits, _ = model(x)
    finally:
        handle.remove()
    return logits, caught[-1]


def width_of(model: nn.Module) -> int:
    return int(model.config.n_embd)


class ValueHead(nn.Module):
    """``V_t = w . h_t + b`` at every position: ``[B, T, C] -> [B, T]``. Starts at zero
    output (w = 0, b = 0), so the first advantages are the rewards themselves and the
    first value loss does not shake the shared body."""

    def __init__(self, n_embd: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_embd, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


class RewardModel(nn.Module):
    """A GPT body and a scalar head on its last real token: ``r(prompt, reply)``.

    ``forward(x, last)``: ids ``x [B, T]`` (right-padded) and ``last [B]``, the index of
    each row's last real token; returns ``[B]`` scores.
    """

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(width_of(body), 1)
        # small init: rewards start near 0 and equal, so the first loss is about ln 2
        nn.init.normal_(self.head.weight, std=1.0 / (width_of(body) + 1) ** 0.5)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        _, h = hidden_states(self.body, x)  # [B, T, C]
        rows = torch.arange(x.shape[0], device=x.device)
        return self.head(h[rows, last].float()).squeeze(-1)  # [B]

    @property
    def context_length(self) -> int:
        return self.body.context_length

    def save(self, directory: str | Path, tokenizer=None) -> Path:  # noqa: ANN001
        """The body as a GPT checkpoint, the head and the metadata beside it."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.body.save(directory)
        if tokenizer is not None:
            tokenizer.save(directory)
        state = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        save_file(state, str(directory / HEAD_FILE))
        write_json(
            directory / META_FILE,
            {
                "format": "scratchllm-reward-model",
                "version": 1,
                "head": "linear on the final norm's output at the last real token",
            },
        )
        return directory


def is_reward_model(directory: str | Path) -> bool:
    return (Path(directory) / META_FILE).is_file()


def load_reward_model(path: str | Path, device: str | torch.device = "cpu"):  # noqa: ANN201
    """``(RewardModel, tokenizer)`` of a reward model checkpoint (a run's ``last/`` or
    ``best/``, or the directory itself)."""
    from safetensors.torch import load_file

    from scratchllm.checkpoint import BEST, find_checkpoint, load_checkpoint

    path = Path(path)
    try:
        directory = find_checkpoint(path, BEST if (path / BEST).is_dir() else "last")
    except FileNotFoundError:
        directory = path
    if not is_reward_model(directory):
        raise ValueError(
            f"{path}: not a reward model (no {META_FILE}); train one with "
            "`scratchllm finetune reward --from CKPT --data PAIRS.jsonl --out DIR`"
        )
    meta = read_json(directory / META_FILE)
    if not isinstance(meta, dict) or meta.get("format") != "scratchllm-reward-model":
        raise ValueError(f"{directory / META_FILE}: not a scratchllm reward model description")
    ckpt = load_checkpoint(directory, device=device)
    model = RewardModel(ckpt.model)
    try:
        model.head.load_state_dict(load_file(str(directory / HEAD_FILE)))
    except (OSError, RuntimeError, ValueError) as e:
        raise ValueError(f"{directory / HEAD_FILE}: not a readable reward head ({e})") from None
    return model.to(device).eval(), ckpt.tokenizer
