"""Feed a growing token buffer to a model and get the next-token logits, cached or not.

The generator owns a buffer ``seq [B, L]`` whose first ``cur`` columns are filled (a
left-padded prompt, then the generated tokens) and asks ``StepRunner.next_logits(seq,
cur)`` for the logits of column ``cur``. The runner picks how:

* **cache** (``model.new_state`` gives a state): the prompt is fed once (prefill), then one
  ``forward_step`` per new token, which appends to the state in place.
* **no cache** (``use_cache=False``, or a family without an incremental path): ``forward``
  on the last ``context_length`` tokens every step. With left padding in that window each
  row runs alone on its real tokens, because ``forward`` takes no padding mask.

**The sliding window.** A model sees at most ``context_length`` (C) tokens. A longer
prompt is conditioned on its last C tokens (``generate`` warns). Once prompt plus output
pass C, every step conditions on the last C tokens, exactly what the no-cache path does:
when the state is full, the runner starts a fresh state and prefills the last C tokens
(the newest included). Positions restart at 0 in the new window, as they do when
``forward`` runs on the window, so learned and sinusoidal positions give the same tokens
with and without the cache. For rope it is the same computation too; a rolling cache that
just drops the oldest keys would be cheaper, but the keys of deeper layers were computed
from tokens that have left the window, so it would not match the sliding ``forward``; we
keep the exact rebuild. Past the context every token therefore costs a window prefill,
like the no-cache path.

Left padding only ever sits at the start of the buffer, so the window of the last W
columns holds, for each row, its last min(W, real tokens) real tokens: the batch sees
what each prompt alone would see.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from scratchllm.generation.inputs import Prompts, context_length_of


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Generate with dropout off, then put the model back as it was."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class StepRunner:
    """Next-token logits for a token buffer; see the module docstring.

    ``max_new_tokens`` sizes the cache; ``need_reorder`` (beam search) falls back to the
    no-cache path when the model's state cannot be reordered.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        prompts: Prompts,
        max_new_tokens: int,
        use_cache: bool = True,
        need_reorder: bool = False,
    ) -> None:
        self.model = model
        self.ctx = context_length_of(model)
        B, T = prompts.shape
        self.batch_size = B
        self.prompt_len = T
        self.pad_lens = torch.tensor(prompts.pad_lens)
        self.max_pad = max(prompts.pad_lens)
        self.real = prompts.real_mask()  # (B, T) True at real prompt tokens
        self.capacity = min(self.ctx, T + max_new_tokens)
        self.state: Any = None
        self.start = 0  # first buffer column the state holds
        self.prefilled = False
        self.use_cache = use_cache and self._probe_state(need_reorder)

    def _probe_state(self, need_reorder: bool) -> bool:
        if not hasattr(self.model, "new_state"):
            return False
        self.state = self.model.new_state(self.batch_size, self.capacity)
        if self.state is None:
            return False
        if need_reorder and not self._can_reorder():
            self.state = None
            return False
        return True

    def _can_reorder(self) -> bool:
        return callable(getattr(self.model, "reorder_state", None)) or callable(
            getattr(self.state, "reorder", None)
        )

    # -- the one entry point ----------------------------------------------------------------

    def next_logits(self, seq: torch.Tensor, cur: int) -> torch.Tensor:
        """Logits ``[B, V]`` for the token after ``seq[:, :cur]``.

        Call it with ``cur = prompt length`` first, then once per new token (``cur + 1``).
        """
        if not self.use_cache:
            return self._forward_window(seq, cur)
        if not self.prefilled:
            self.prefilled = True
            self.start = max(0, cur - self.ctx)
            return self._prefill(seq, cur)
        if cur - self.start > self.capacity:  # the state is full: slide the window
            self.start = cur - self.ctx
            self.state = self.model.new_state(self.batch_size, self.ctx)
            return self._prefill(seq, cur)
        # (B, 1) the newest token: always a real one, so no pad mask
        return self.model.forward_step(seq[:, cur - 1 : cur], self.state)[:, -1]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the batch rows ``index`` (beam search continues some beams twice)."""
        self.real = self.real[index.to(self.real.device)]
        self.pad_lens = self.pad_lens[index.cpu()]
        if self.use_cache and self.state is not None:
            reorder = getattr(self.model, "reorder_state", None)
            if callable(reorder):
                self.state = reorder(self.state, index)
            else:
                self.state = self.state.reorder(index) or self.state

    # -- the two paths ----------------------------------------------------------------------

    def _pad_mask(self, start: int, cur: int) -> torch.Tensor | None:
        """``[B, cur - start]`` False at left padding, or None when the window has none."""
        if start >= self.max_pad:
            return None
        T = self.prompt_len
        mask = self.real[:, start:T]
        if cur > T:  # generated columns are real
            mask = torch.cat([mask, mask.new_ones(self.batch_size, cur - T)], dim=1)
        return mask

    def _prefill(self, seq: torch.Tensor, cur: int) -> torch.Tensor:
        window = seq[:, self.start : cur]  # (B, W)
        logits = self.model.forward_step(window, self.state, self._pad_mask(self.start, cur))
        return logits[:, -1]

    def _forward_window(self, seq: torch.Tensor, cur: int) -> torch.Tensor:
        start = max(0, cur - self.ctx)
        if start >= self.max_pad:  # no padding in the window: one batched forward
            return self.model(seq[:, start:cur])[0][:, -1]
        rows = []
        for b in range(self.batch_size):
            first = max(start, int(self.pad_lens[b]))
            rows.append(self.model(seq[b : b + 1, first:cur])[0][:, -1])
        return torch.cat(rows, dim=0)
