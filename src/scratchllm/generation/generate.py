"""One decode loop for every model family: greedy, sampling, stop conditions, streaming.

>>> import torch
>>> from scratchllm.models import GPT, GPTConfig                     # doctest: +SKIP
>>> model = GPT(GPTConfig(vocab_size=65, block_size=64)).eval()      # doctest: +SKIP
>>> out = generate(model, [[1, 2, 3]], max_new_tokens=10, temperature=0)  # doctest: +SKIP
>>> out.shape                                                        # doctest: +SKIP
torch.Size([1, 13])

Each step asks the model for the next-token logits (``runner.StepRunner``: KV cache or
a window re-run, sliding past the context), runs the logits processors, and picks a
token: the argmax (greedy: ``temperature=0`` or ``do_sample=False``) or a draw.

**What comes back.** ``generate`` returns a LongTensor ``[B, T + n]``: the prompts (left
padded as given, or padded with ``pad_token_id`` for a list of unequal prompts), then
``n <= max_new_tokens`` new tokens. A row that emitted ``eos_token_id`` keeps that eos and
is padded after it with ``pad_token_id`` (default: the eos id); the loop ends when every
row has ended. A row that produced a stop string ends *before* it: its tokens that overlap
the stop text are dropped, so decoding the row never shows the stop text (when a stop
string starts inside a token, the text of that token before the stop is lost too). Beam
search (``num_beams > 1``) returns its best sequence per row; ``beam_search`` gives every
returned beam with its score.

**Randomness** comes from one ``torch.Generator`` per row, seeded ``seed + b`` for row
``b`` (or ``seed[b]`` when a list is given), never the global RNG; so a batch gives the
same tokens as its prompts run one by one with those seeds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from scratchllm.generation.beam import run_beam_search
from scratchllm.generation.config import GenerationConfig, normalise_seeds, resolve_config
from scratchllm.generation.inputs import (
    Prompts,
    PromptTruncatedWarning,
    model_device,
    prompts_for,
)
from scratchllm.generation.processors import LogitsProcessor, build_processors, sample_tokens
from scratchllm.generation.runner import StepRunner, eval_mode
from scratchllm.generation.text import TextTracker, decode_function

__all__ = ["PromptTruncatedWarning", "generate", "model_device", "stream_generate"]


def generate(
    model: torch.nn.Module,
    idx: torch.Tensor | Sequence[int] | Sequence[Sequence[int]],
    max_new_tokens: int | None = None,
    *,
    config: GenerationConfig | None = None,
    attention_mask: torch.Tensor | None = None,
    tokenizer: Any = None,
    logits_processor: Sequence[LogitsProcessor] = (),
    **settings: Any,
) -> torch.Tensor:
    """Continue each prompt by up to ``max_new_tokens`` tokens; return ids ``[B, T + n]``.

    ``idx``: a LongTensor ``[B, T]`` (``attention_mask`` 0 marks left padding), one list of
    ids, or a list of id lists of any lengths. The settings are ``GenerationConfig``'s
    fields, given as ``config=`` or as keywords (which override the config):
    ``temperature=0`` or ``do_sample=False`` decodes greedily; otherwise tokens are sampled
    after ``temperature``, ``top_k`` and ``top_p``; ``num_beams > 1`` runs beam search.
    ``stop`` strings need ``tokenizer`` (anything with ``decode(ids) -> str``).
    ``logits_processor``: extra ``f(input_ids, logits) -> logits`` applied after the
    repetition penalty. See the module docstring for what comes back.

    >>> generate(model, [[1, 2, 3]], 10, temperature=0.8, top_k=40, seed=0)  # doctest: +SKIP
    """
    config = resolve_config("generate", config, max_new_tokens, settings)
    if config.num_beams > 1:
        return run_beam_search(model, idx, config, attention_mask, logits_processor).sequences[:, 0]
    decode = _stop_decoder(config, tokenizer)
    prompts = prompts_for(model, idx, config, attention_mask)
    if decode and prompts.shape[0] > 1 and config.fill_token_id is None:
        raise ValueError(
            "stop strings on a batch need pad_token_id (or eos_token_id) to fill the rows "
            "that stop before the others"
        )
    with eval_mode(model), torch.inference_mode():
        loop = DecodeLoop(model, prompts, config, logits_processor)
        trackers = [TextTracker(decode, config.stop) for _ in range(loop.B)] if decode else None
        keep: dict[int, int] = {}  # rows ended by a stop string -> how many new tokens stay
        for _ in range(config.max_new_tokens):
            tokens = loop.step()
            if trackers is not None:
                _watch_stops(loop, tokens, trackers, keep)
            if loop.tracks_end and loop.all_ended():
                break
        return loop.result(keep)


def stream_generate(
    model: torch.nn.Module,
    prompt: torch.Tensor | Sequence[int],
    max_new_tokens: int | None = None,
    *,
    config: GenerationConfig | None = None,
    tokenizer: Any = None,
    logits_processor: Sequence[LogitsProcessor] = (),
    **settings: Any,
) -> Iterator[int] | Iterator[str]:
    """Generate for one prompt, yielding as the model goes (settings as for ``generate``).

    Without ``tokenizer`` it yields token ids; with one it yields text pieces, each made of
    whole characters (a character split over tokens comes out once complete). The eos
    token ends the stream and is not yielded; a stop string ends it and is not yielded
    either (text that might begin a stop string is held back until it is clear). The
    tokens are those ``generate`` returns for the same arguments, up to the stop.

    >>> pieces = stream_generate(model, tok.encode("Once"), 50, tokenizer=tok)  # doctest: +SKIP
    >>> for piece in pieces:                                                  # doctest: +SKIP
    ...     print(piece, end="", flush=True)
    """
    config = resolve_config("stream_generate", config, max_new_tokens, settings)
    if config.num_beams > 1:
        raise ValueError(
            f"stream_generate streams greedy or sampled tokens; beam search "
            f"(num_beams={config.num_beams}) only knows its best beam at the end: "
            "use beam_search() or generate()"
        )
    decode = _stop_decoder(config, tokenizer) or (decode_function(tokenizer) if tokenizer else None)
    prompts = prompts_for(model, prompt, config, None)
    if prompts.shape[0] != 1:
        raise ValueError(
            f"stream_generate takes one prompt, got {prompts.shape[0]}; use generate() for batches"
        )
    if decode is None:
        return _stream_tokens(model, prompts, config, logits_processor)
    return _stream_text(model, prompts, config, logits_processor, decode)


# -- the loop ----------------------------------------------------------------------------


class DecodeLoop:
    """The state of one greedy/sampling run: token buffer, runner, processors, RNGs.

    ``step()`` picks the next token of every row, writes it into ``seq`` and returns it.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        prompts: Prompts,
        config: GenerationConfig,
        extra_processors: Sequence[LogitsProcessor] = (),
    ) -> None:
        B, T = prompts.shape
        self.B, self.T = B, T
        self.config = config
        self.prompts = prompts
        device = prompts.ids.device
        self.seq = torch.empty(B, T + config.max_new_tokens, dtype=torch.long, device=device)
        self.seq[:, :T] = prompts.ids
        if prompts.padded:
            # The repetition penalty reads seq; a pad column holding the row's first real
            # token adds nothing it has not seen (the model never sees pads: they are masked).
            first = prompts.ids.gather(1, torch.tensor(prompts.pad_lens, device=device)[:, None])
            self.seq[:, :T] = torch.where(prompts.real_mask(), prompts.ids, first)
        self.cur = T
        self.runner = StepRunner(model, prompts, config.max_new_tokens, config.use_cache)
        self.processors = build_processors(
            do_sample=config.sampling,
            temperature=config.temperature,
            top_k=config.top_k,
            top_p=config.top_p,
            repetition_penalty=config.repetition_penalty,
            extra=extra_processors,
        )
        self.sampling = config.sampling
        if self.sampling:
            self.generators = [
                torch.Generator().manual_seed(s) for s in normalise_seeds(config.seed, B)
            ]
        self.eos = torch.tensor(config.eos_token_id, device=device) if config.eos_token_id else None
        self.fill = config.fill_token_id
        vocab = getattr(model, "vocab_size", None)
        if self.fill is not None and vocab is not None and self.fill >= vocab:
            raise ValueError(
                f"pad/eos id {self.fill} is outside the model's vocabulary [0, {vocab}); "
                "ended rows are fed it, so it must be a real token id"
            )
        # Only eos or stop strings end a row early; otherwise skip all the bookkeeping.
        self.tracks_end = self.eos is not None or bool(config.stop)
        self.ended = torch.zeros(B, dtype=torch.bool, device=device)

    def step(self) -> torch.Tensor:
        """Choose, record and return the next token of every row, ``[B]``."""
        logits = self.runner.next_logits(self.seq, self.cur)  # (B, V)
        if self.processors:
            logits = self.processors(self.seq[:, : self.cur], logits)
        tokens = sample_tokens(logits, self.generators) if self.sampling else logits.argmax(-1)
        if self.tracks_end:
            if self.fill is not None:
                tokens = torch.where(self.ended, self.fill, tokens)  # ended rows are padded
            if self.eos is not None:
                self.ended |= torch.isin(tokens, self.eos)
        self.seq[:, self.cur] = tokens
        self.cur += 1
        return tokens

    def all_ended(self) -> bool:
        return bool(self.ended.all())

    def end_row(self, b: int) -> None:
        self.ended[b] = True

    def result(self, keep: dict[int, int] | None = None) -> torch.Tensor:
        """The output ``[B, T + n]``: prompts as given, then the new tokens, ended rows padded."""
        out = self.seq[:, : self.cur].clone()
        out[:, : self.T] = self.prompts.ids
        if keep:
            if len(keep) == self.B:  # every row stopped: drop the columns nobody needs
                out = out[:, : self.T + max(keep.values())]
            for b, n in keep.items():
                if self.T + n < out.shape[1]:
                    out[b, self.T + n :] = self.fill
        return out


def _watch_stops(
    loop: DecodeLoop, tokens: torch.Tensor, trackers: list[TextTracker], keep: dict[int, int]
) -> None:
    """Feed this step's tokens to the rows' text trackers; end rows that hit a stop string."""
    ended = loop.ended.tolist()  # rows that emitted eos (now or before) are done already
    for b, token in enumerate(tokens.tolist()):
        if b in keep or ended[b]:
            continue
        if trackers[b].push(token):
            keep[b] = trackers[b].tokens_before_stop()
            loop.end_row(b)


# -- streaming -------------------------------------------------------------------------------


def _stream_tokens(
    model: torch.nn.Module,
    prompts: Prompts,
    config: GenerationConfig,
    extra: Sequence[LogitsProcessor],
) -> Iterator[int]:
    with eval_mode(model), torch.inference_mode():
        loop = DecodeLoop(model, prompts, config, extra)
        eos = set(config.eos_token_id or ())
        for _ in range(config.max_new_tokens):
            token = int(loop.step()[0])
            if token in eos:
                return
            yield token


def _stream_text(
    model: torch.nn.Module,
    prompts: Prompts,
    config: GenerationConfig,
    extra: Sequence[LogitsProcessor],
    decode,
) -> Iterator[str]:
    tracker = TextTracker(decode, config.stop)
    shown = 0  # characters of tracker.text already yielded
    with eval_mode(model), torch.inference_mode():
        loop = DecodeLoop(model, prompts, config, extra)
        eos = set(config.eos_token_id or ())
        for _ in range(config.max_new_tokens):
            token = int(loop.step()[0])
            if token in eos:
                break
            stopped = tracker.push(token)
            end = tracker.safe_end()
            if end > shown:
                yield tracker.text[shown:end]
                shown = end
            if stopped:
                return
    tracker.finish()  # no stop string came: show what was held back and any pending bytes
    if len(tracker.text) > shown:
        yield tracker.text[shown:]


# -- helpers ---------------------------------------------------------------------------------


def _stop_decoder(config: GenerationConfig, tokenizer: Any):
    if not config.stop:
        return None
    if tokenizer is None:
        raise ValueError(
            f"stop={list(config.stop)} needs tokenizer= (an object with decode(ids) -> str) "
            "to read the generated text"
        )
    return decode_function(tokenizer)
