"""One optimizer step, the only one: what the ``Trainer`` runs and ``train_step_fn`` exposes.

In order: set the learning rate; for each micro-batch run forward (under autocast and
label smoothing as configured) and backward, with the loss divided by the number of
micro-batches so the gradients sum to those of one big batch; clip the global gradient
norm; AdamW step; clear the gradients. Under DistributedDataParallel the gradients are
averaged across processes during the last micro-batch's backward only (``no_sync`` on
the others), so accumulation costs one all-reduce per step.

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
from scratchllm.models.base import label_smoothing
from scratchllm.training.device import autocast, autocast_dtype, resolve_device
from scratchllm.training.optimizer import configure_optimizer
from scratchllm.training.schedule import lr_at

MicroBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]  # x, y, mask: (B, T) each


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

    def run(self, step: int, micro_batches: Sequence[MicroBatch]) -> tuple[torch.Tensor, ...]:
        """Update number ``step`` (0-based) on ``micro_batches`` (already on the device).

        Returns ``(mean loss of the micro-batches, gradient norm before clipping or None)``,
        both device tensors.
        """
        cfg = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        A = len(micro_batches)
        step_loss = torch.zeros((), device=self.device)
        for i, (x, y, m) in enumerate(micro_batches):
            last = i == A - 1
            no_sync = self.forward_model.no_sync() if self.ddp and not last else None
            with no_sync or contextlib.nullcontext():
                with autocast(self.device, self.amp_dtype), label_smoothing(cfg.label_smoothing):
                    _, loss = self.forward_model(x, y, m)
                (loss / A).backward()
            step_loss += loss.detach()
        norm = self._update()
        return step_loss / A, norm

    def _update(self) -> torch.Tensor | None:
        """Clip the global gradient norm (if ``grad_clip``), step, clear the gradients.
        Returns the norm before clipping (a device tensor, no sync) or None."""
        norm = None
        if self.config.grad_clip:
            params = [p for p in self.model.parameters() if p.grad is not None]
            foreach = bool(params) and params[0].device.type != "mps"
            norm = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip, foreach=foreach)
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
    ``step.optimizer``.
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
