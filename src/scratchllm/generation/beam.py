"""Beam search: keep the ``num_beams`` most likely continuations at every step.

Each step extends every running beam by every token, scores each extension by its total
log-probability, and keeps the best ``num_beams``. A beam that emits ``eos_token_id`` (or
reaches ``max_new_tokens``) becomes a finished hypothesis, scored

    score = sum of token log-probabilities / (new tokens, eos included) ** length_penalty

so ``length_penalty > 0`` favours longer outputs, ``< 0`` shorter ones, and ``0`` ranks by
raw log-probability. The best ``num_beams`` hypotheses per prompt are kept.

The bookkeeping matches Hugging Face's beam search (transformers 5), so the two give the
same sequences and scores on the same model:

* ``2 * num_beams`` candidates are ranked each step (more with several eos ids), so that
  ``num_beams`` beams can go on even if the best ones just ended;
* only a candidate ranked within the top ``num_beams`` may finish;
* ``early_stopping``: ``True`` ends a prompt's search once it has ``num_beams`` finished
  hypotheses; ``False`` (default) also ends it when the best running beam, scored at its
  current length, cannot beat the worst finished one (a heuristic); ``"never"`` does the
  same but, with ``length_penalty > 0``, scores the running beam at the longest length it
  could reach (exact for ``length_penalty >= 0``).

>>> out = beam_search(model, [[1, 2, 3]], max_new_tokens=8, num_beams=4)  # doctest: +SKIP
>>> out.sequences.shape, out.scores.shape                                 # doctest: +SKIP
(torch.Size([1, 1, 11]), torch.Size([1, 1]))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from scratchllm.generation.config import GenerationConfig, resolve_config
from scratchllm.generation.inputs import Prompts, prompts_for
from scratchllm.generation.processors import LogitsProcessor, build_processors
from scratchllm.generation.runner import StepRunner, eval_mode

_NEG = -1.0e9  # the score of "no beam here" (as in Hugging Face, finite so sums stay finite)


@dataclass
class BeamSearchOutput:
    """The best hypotheses of each prompt, best first."""

    sequences: torch.Tensor  # (B, R, T + n) prompt, then the beam; padded after it ends
    scores: torch.Tensor  # (B, R) length-normalised log-probability (see the module doc)
    new_tokens: torch.Tensor  # (B, R) how many tokens each hypothesis added (eos included)


def beam_search(
    model: torch.nn.Module,
    idx: torch.Tensor | Sequence[int] | Sequence[Sequence[int]],
    max_new_tokens: int | None = None,
    num_beams: int | None = None,
    *,
    config: GenerationConfig | None = None,
    attention_mask: torch.Tensor | None = None,
    logits_processor: Sequence[LogitsProcessor] = (),
    **settings: Any,
) -> BeamSearchOutput:
    """Beam search over ``idx`` (same prompt forms as ``generate``); see the module docstring.

    The settings are ``GenerationConfig``'s fields (``config=`` or keywords); those that
    matter here are ``length_penalty``, ``early_stopping``, ``num_return_sequences``,
    ``eos_token_id``, ``pad_token_id``, ``repetition_penalty`` and ``use_cache``.
    """
    if num_beams is not None:
        settings = {**settings, "num_beams": num_beams}
    config = resolve_config("beam_search", config, max_new_tokens, settings)
    return run_beam_search(model, idx, config, attention_mask, logits_processor)


def run_beam_search(
    model: torch.nn.Module,
    idx: Any,
    config: GenerationConfig,
    attention_mask: torch.Tensor | None = None,
    extra: Sequence[LogitsProcessor] = (),
) -> BeamSearchOutput:
    """``beam_search`` with the settings already validated in ``config``."""
    prompts = prompts_for(model, idx, config, attention_mask, stacklevel=4)
    with eval_mode(model), torch.inference_mode():
        return _BeamSearch(model, prompts, config, extra).run()


class _BeamSearch:
    def __init__(
        self,
        model: torch.nn.Module,
        prompts: Prompts,
        config: GenerationConfig,
        extra: Sequence[LogitsProcessor],
    ) -> None:
        B, T = prompts.shape
        K, N = config.num_beams, config.max_new_tokens
        self.B, self.T, self.K, self.N, self.L = B, T, K, N, T + N
        self.config = config
        self.prompts = prompts
        device = prompts.ids.device
        self.device = device
        # Every prompt row becomes K beam rows: (B * K, ...) with beam k of prompt b at b*K + k.
        beam_prompts = Prompts(
            prompts.ids.repeat_interleave(K, dim=0), [n for n in prompts.pad_lens for _ in range(K)]
        )
        self.seq = torch.empty(B * K, self.L, dtype=torch.long, device=device)
        ids = beam_prompts.ids
        if beam_prompts.padded:  # keep the repetition penalty blind to padding (see generate)
            first = ids.gather(1, torch.tensor(beam_prompts.pad_lens, device=device)[:, None])
            ids = torch.where(beam_prompts.real_mask(), ids, first)
        self.seq[:, :T] = ids
        self.runner = StepRunner(model, beam_prompts, N, config.use_cache, need_reorder=True)
        self.processors = build_processors(
            do_sample=False, repetition_penalty=config.repetition_penalty, extra=extra
        )
        eos = config.eos_token_id or ()
        self.eos = torch.tensor(eos, device=device) if eos else None
        self.n_cand = max(2, 1 + len(eos)) * K  # candidates ranked per prompt and step
        fill = config.fill_token_id
        self.fill = 0 if fill is None else fill  # without eos every beam runs to the end
        # Running beams: only beam 0 is alive at first, so the K beams do not start as copies.
        self.run_scores = torch.full((B, K), _NEG, device=device)
        self.run_scores[:, 0] = 0.0
        # Finished hypotheses: K slots per prompt, best first.
        self.fin_seq = torch.full((B, K, self.L), self.fill, dtype=torch.long, device=device)
        self.fin_scores = torch.full((B, K), _NEG, device=device)
        self.fin_len = torch.zeros(B, K, dtype=torch.long, device=device)
        self.fin_done = torch.zeros(B, K, dtype=torch.bool, device=device)
        self.open = torch.ones(B, dtype=torch.bool, device=device)  # may still improve

    def run(self) -> BeamSearchOutput:
        for step in range(self.N):
            if not self._step(step):
                break
        R = self.config.num_return_sequences
        new_tokens = self.fin_len[:, :R]
        length = self.T + (int(new_tokens.max()) if self.N else 0)
        sequences = self.fin_seq[:, :R, :length].clone()
        sequences[:, :, : self.T] = self.prompts.ids[:, None, :]
        scores = self.fin_scores[:, :R] if self.N else torch.zeros(self.B, R, device=self.device)
        return BeamSearchOutput(sequences, scores.clone(), new_tokens.clone())

    def _step(self, step: int) -> bool:
        """One extension of every beam; False when the search is over."""
        B, K, C = self.B, self.K, self.n_cand
        cur = self.T + step
        logits = self.runner.next_logits(self.seq, cur)  # (B*K, V)
        logp = torch.log_softmax(logits.float(), dim=-1)
        if self.processors:  # Hugging Face applies them to the log-probabilities
            logp = self.processors(self.seq[:, :cur], logp)
        V = logp.shape[-1]
        total = (logp.view(B, K, V) + self.run_scores[:, :, None]).view(B, K * V)
        cand_scores, cand_idx = torch.topk(total, min(C, K * V), dim=-1)  # (B, C) best first
        C = cand_scores.shape[1]
        cand_beam, cand_tok = cand_idx // V, cand_idx % V  # (B, C) which beam, which token
        last = step == self.N - 1
        if last:  # every candidate reaches max_new_tokens
            ends = torch.ones_like(cand_tok, dtype=torch.bool)
        elif self.eos is not None:
            ends = torch.isin(cand_tok, self.eos)
        else:
            ends = torch.zeros_like(cand_tok, dtype=torch.bool)

        self._finish(step, cand_scores, cand_beam, cand_tok, ends)
        if last:
            return False
        self._continue(cur, cand_scores, cand_beam, cand_tok, ends)
        return self._still_open(step)

    def _finish(self, step, cand_scores, cand_beam, cand_tok, ends) -> None:
        """Make the candidates that ended into hypotheses, keeping the best K per prompt."""
        B, K = self.B, self.K
        C = cand_scores.shape[1]
        top_k = torch.arange(C, device=self.device) < K
        may_finish = ends & top_k[None, :] & self.open[:, None]  # (B, C)
        if self.config.early_stopping is True:
            may_finish &= ~self.fin_done.all(dim=1, keepdim=True)
        if not bool(may_finish.any()):
            return
        cur = self.T + step
        scores = cand_scores / float(step + 1) ** self.config.length_penalty
        scores = scores.masked_fill(~may_finish, float("-inf"))
        beams = self.seq.view(B, K, self.L)
        cand_seq = beams.gather(1, cand_beam[:, :, None].expand(B, C, self.L)).clone()
        cand_seq[:, :, cur] = cand_tok
        cand_seq[:, :, cur + 1 :] = self.fill
        merged_scores = torch.cat([self.fin_scores, scores], dim=1)  # (B, K + C)
        best = torch.topk(merged_scores, K, dim=1).indices  # (B, K) best first
        self.fin_scores = merged_scores.gather(1, best)
        self.fin_seq = torch.cat([self.fin_seq, cand_seq], dim=1).gather(
            1, best[:, :, None].expand(B, K, self.L)
        )
        step_len = torch.full_like(cand_tok, step + 1)
        self.fin_len = torch.cat([self.fin_len, step_len], dim=1).gather(1, best)
        self.fin_done = torch.cat([self.fin_done, may_finish], dim=1).gather(1, best)

    def _continue(self, cur, cand_scores, cand_beam, cand_tok, ends) -> None:
        """The best K candidates that did not end become the running beams."""
        B, K = self.B, self.K
        alive = cand_scores.masked_fill(ends, float("-inf"))
        pick = torch.topk(alive, K, dim=1).indices  # (B, K)
        self.run_scores = alive.gather(1, pick)
        source = cand_beam.gather(1, pick)  # (B, K) the beam each new beam extends
        rows = (torch.arange(B, device=self.device)[:, None] * K + source).view(-1)  # (B*K,)
        self.seq = self.seq.index_select(0, rows)
        self.seq[:, cur] = cand_tok.gather(1, pick).view(-1)
        self.runner.reorder(rows)

    def _still_open(self, step: int) -> bool:
        """Update which prompts may still improve; False when none can."""
        cfg = self.config
        lp = cfg.length_penalty
        length = self.N if (cfg.early_stopping == "never" and lp > 0) else step + 1
        best_possible = self.run_scores[:, 0] / float(length) ** lp  # (B,)
        full = self.fin_done.all(dim=1)
        worst = self.fin_scores.min(dim=1).values
        self.open &= ~(full & (best_possible <= worst))
        if cfg.early_stopping is True and bool(full.all()):
            return False
        return bool(self.open.any())
