"""One optimizer step, the only one: what the ``Trainer`` runs and ``train_step_fn`` exposes.

In order: set the learning rate; for each micro-batch run forward (under autocast and
label smoothing as configured) and backward, each loss weighted so the gradients sum to
those of one big batch; clip the global gradient norm; AdamW step; clear the gradients.

**Weighting.** A micro-batch's loss is the mean over its counted tokens. Windows of a
token stream all count the same number of tokens, so each loss is divided by the number of
micro-batches. With a loss mask (answer tokens only, padding left out) the counts differ,
and a mean of per-batch means would weigh a token of a short batch more than one of a long
batch. Then micro-batch i's loss (mean over its ``n_i`` tokens) is weighted by
``n_i / N``, ``N`` the counted tokens of the whole optimizer step (all micro-batches, all
processes): the step minimises ``sum of token losses / N``, exactly what one batch holding
every row would give::

    loss_step = sum_i (n_i / N) * mean_i = (sum over every counted token of its loss) / N

Under DistributedDataParallel, which averages gradients over the W processes, ``N`` is
summed over the processes (one all-reduce of a scalar) and the weight is ``W n_i / N``.

Under DistributedDataParallel the gradients are averaged across processes during the last
micro-batch's backward only (``no_sync`` on the others), so accumulation costs one
all-reduce of the gradients per step.

Nothing here reads a device tensor back to the host: the loss and the norm stay on the
device, and the caller decides when to sync (the Trainer: once per log step).

>>> step = train_step_fn(model, TrainConfig(lr=1e-3))      # doctest: +SKIP
>>> loss = step(x, y)                                      # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from scratchllm.configs.train import TrainConfig
from scratchllm.models import train_kernel
from scratchllm.models.base import label_smoothing
from scratchllm.training.device import autocast, autocast_dtype, resolve_device
from scratchllm.training.optimizer import configure_optimizer
from scratchllm.training.schedule import lr_at

# (x, y, mask) or (x, y, mask, documents), each (B, T); mask None = every target counts;
# documents: packed rows, the example each position belongs to (models.gpt's ``documents``).
MicroBatch = tuple[torch.Tensor | None, ...]
# A loss other than the model's own (e.g. distillation): (model, micro-batch) -> the mean over
# the micro-batch's counted tokens.
LossFn = Callable[[torch.nn.Module, MicroBatch], torch.Tensor]
IGNORE_INDEX = -1  # targets that never count (models.base.lm_loss)


def forward_loss(model: torch.nn.Module, batch: MicroBatch) -> torch.Tensor:
    """The model's own loss on a micro-batch: ``model(x, y, mask)``, with ``documents=`` for
    packed rows (several examples in one row, attending only within their own)."""
    x, y, m, *rest = batch
    documents = rest[0] if rest else None
    if documents is None:
        return model(x, y, m)[1]
    return model(x, y, m, documents=documents)[1]


def counted_tokens(batch: MicroBatch) -> torch.Tensor:
    """How many targets of a micro-batch count: mask true and target not ``IGNORE_INDEX``
    (a device tensor, no sync)."""
    _, y, m, *_ = batch
    keep = y != IGNORE_INDEX
    if m is not None:
        keep = keep & m.bool()
    return keep.sum()


@dataclass
class TrainStep:
    """Everything one step needs besides the data: see ``run``.

    ``forward_model`` is what the batches go through (the model itself, its
    ``torch.compile`` wrapper or its DDP wrapper); ``model`` owns the parameters the
    optimizer updates and the clipping reads.
    """

    model: torch.nn.Module
    forward_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None = plain float32
    ddp: bool = False  # forward_model is DDP: skip the gradient sync on all but the last
    loss_fn: LossFn | None = None  # None: the model's own loss (forward_loss)

    def run(self, step: int, micro_batches: Sequence[MicroBatch]) -> tuple[torch.Tensor, ...]:
        """Update number ``step`` (0-based) on ``micro_batches`` (already on the device).

        Returns ``(the step's loss, gradient norm before clipping or None)``, both device
        tensors; the loss is the mean over the step's counted tokens (module docstring).
        """
        cfg = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        A = len(micro_batches)
        if A == 0:
            raise ValueError("a step needs at least one micro-batch")
        counts = self._token_counts(micro_batches)  # None: equal counts, 1 / A each
        loss_fn = self.loss_fn or forward_loss
        step_loss = None
        for i, batch in enumerate(micro_batches):
            last = i == A - 1
            no_sync = self.forward_model.no_sync() if self.ddp and not last else None
            with no_sync or contextlib.nullcontext():
                with autocast(self.device, self.amp_dtype), label_smoothing(cfg.label_smoothing):
                    loss = loss_fn(self.forward_model, batch)
                if counts is None:  # (one micro-batch: loss / 1 and its node are the loss)
                    (loss / A if A > 1 else loss).backward()
                    part = loss.detach()
                else:  # n_i / N (W n_i / N under DDP), in the loss's precision
                    n, total, scale = counts
                    weight = n[i].to(loss.dtype) * scale / total.to(loss.dtype)
                    (loss * weight).backward()
                    part = loss.detach() * weight
                step_loss = part if step_loss is None else step_loss + part
        norm = self._update()
        if counts is None and A > 1:
            step_loss = step_loss / A
        return step_loss, norm

    def _token_counts(
        self, micro_batches: Sequence[MicroBatch]
    ) -> tuple[torch.Tensor, torch.Tensor, float] | None:
        """``(counted tokens per micro-batch, their total over every process, W)``, or None
        when no micro-batch has a mask (each counts all of its ``B * T`` targets)."""
        if all(b[2] is None for b in micro_batches):
            return None
        counts = torch.stack([counted_tokens(b) for b in micro_batches]).to(self.device)
        total = counts.sum()
        scale = 1.0
        if self.ddp:
            import torch.distributed as dist

            dist.all_reduce(total)  # the counted tokens of every process's micro-batches
            scale = float(dist.get_world_size())
        return counts, total.clamp(min=1), scale

    def _update(self) -> torch.Tensor | None:
        """Clip the global gradient norm (if ``grad_clip``), step, clear the gradients.
        Returns the norm before clipping (a device tensor, no sync) or None.

        On a CPU the clip is one call of the C++ kernel (``train_kernel.clip_grad_norm``:
        the same norm and factor as ``clip_grad_norm_``, in two passes over all the
        gradients instead of about two operations per parameter). It clips the parameters
        the optimizer updates, which ``configure_optimizer`` makes every trainable one: read
        from its groups, where ``model.parameters()`` walks every module (0.15 ms a step
        for a small GPT)."""
        norm = None
        clip = self.config.grad_clip
        if clip:
            params = [
                p for group in self.optimizer.param_groups for p in group["params"]
                if p.grad is not None
            ]  # fmt: skip
            norm = train_kernel.clip_grad_norm([p.grad for p in params], clip)
            if norm is None:
                foreach = bool(params) and params[0].device.type != "mps"
                norm = torch.nn.utils.clip_grad_norm_(params, clip, foreach=foreach)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm


def train_step_fn(
    model: torch.nn.Module, config: TrainConfig, device: str | torch.device | None = None
) -> Callable[..., torch.Tensor]:
    """The Trainer's update as a plain function, for benchmarks and custom loops.

    Returns ``step(x, y, mask=None) -> loss`` (a device tensor; no host sync) doing what one
    ``Trainer`` step does with one micro-batch on one process (``TrainStep.run``): the
    scheduled learning rate, forward (with autocast and label smoothing as configured),
    backward, clipping, the AdamW update of ``configure_optimizer``. The optimizer is
    ``step.optimizer``. Unlike ``Trainer`` on CPU, it leaves glibc's settings alone: call
    ``scratchllm.memory.keep_freed_memory()`` for the Trainer's allocation behaviour.
    """
    dev = resolve_device(config.device) if device is None else torch.device(device)
    model.to(dev).train()
    runner = TrainStep(
        model=model,
        forward_model=torch.compile(model) if config.compile else model,
        optimizer=configure_optimizer(model, config, dev.type),
        config=config,
        device=dev,
        amp_dtype=autocast_dtype(config.dtype, dev)[0],
    )
    counter = [0]

    def step(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        loss, _ = runner.run(counter[0], [(x, y, mask)])
        counter[0] += 1
        return loss

    step.optimizer = runner.optimizer  # type: ignore[attr-defined]
    return step
