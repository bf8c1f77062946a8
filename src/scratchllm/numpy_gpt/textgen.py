"""Text in, text out on the NumPy engine: what ``scratchllm sample --engine numpy`` does.

``scratchllm.textgen``'s two calls with the NumPy GPT behind them: ``load_model(path)``
reads a checkpoint of either engine, ``iter_completions`` / ``complete`` continue a
prompt through ``numpy_gpt.generate`` with the same options, prompt handling and stop
strings (``tokenizers.streaming.TextTracker``, the one the PyTorch loop uses). The random
numbers are PyTorch's (``generate``'s docstring), so on the same weights and seed the two
engines print the same samples. Beam search is the PyTorch engine's only.

>>> model, tok = load_model("runs/np")                                    # doctest: +SKIP
>>> complete(model, tok, "To be", num_samples=2, seed=0, stop=["\\n"])    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from scratchllm.numpy_gpt.checkpoint import BEST, LAST, load_checkpoint
from scratchllm.numpy_gpt.generate import stream_tokens
from scratchllm.numpy_gpt.model import NumpyGPT
from scratchllm.textgen import check_options, encode_prompt
from scratchllm.tokenizers.streaming import TextTracker

__all__ = ["check_options", "complete", "encode_prompt", "iter_completions", "load_model"]


def load_model(path: str | Path, best: bool = False, device: str = "cpu") -> tuple[NumpyGPT, Any]:
    """The NumPy GPT (in eval mode) and tokenizer of a run directory (its ``last/``, or
    ``best/``) or a checkpoint directory, written by either engine."""
    if str(device).split(":", 1)[0] not in ("cpu", "auto"):
        raise ValueError(f"--device {device}: the NumPy engine runs on the CPU; use --device cpu")
    ckpt = load_checkpoint(path, which=BEST if best else LAST)
    return ckpt.model.eval(), ckpt.tokenizer


def iter_completions(
    model: NumpyGPT,
    tokenizer: Any,
    prompt: str,
    *,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    num_beams: int = 1,
    num_samples: int = 1,
    seed: int | None = None,
    stop: Sequence[str] | None = None,
    stream: bool = False,
) -> Iterator[tuple[int, str]]:
    """Yield ``(i, text)`` pieces of the continuations of ``prompt``, as
    ``scratchllm.textgen.iter_completions`` does: ``(i, "")`` when sample ``i`` starts,
    then its text in one piece or (``stream``) as it comes, ending before a ``stop``
    string. Sample ``i`` is seeded ``seed + i``."""
    check_options(max_new_tokens, num_samples, num_beams, stream)
    if num_beams > 1:
        raise ValueError(
            "--num-beams: beam search is in the PyTorch engine only; sample (or use "
            "--temperature 0 for greedy) with --engine numpy, or drop --engine numpy"
        )
    ids, _ = encode_prompt(tokenizer, prompt)
    options = dict(temperature=temperature, top_k=top_k, top_p=top_p,
                   repetition_penalty=repetition_penalty)  # fmt: skip
    for i in range(num_samples):
        row_seed = None if seed is None else seed + i
        tokens = stream_tokens(model, ids, max_new_tokens, seed=row_seed, **options)
        yield i, ""
        yield from ((i, piece) for piece in _text(tokens, tokenizer, stop or (), stream))


def _text(tokens: Iterator[int], tokenizer: Any, stop: Sequence[str], stream: bool):  # noqa: ANN202
    """One sample's text from its tokens, as the PyTorch loop makes it: streamed, the
    text shown as soon as it cannot be the start of a stop string; whole, the tokens
    wholly before the stop string decoded together."""
    if not stop and not stream:
        yield tokenizer.decode(list(tokens))
        return
    tracker = TextTracker(tokenizer.decode, stop)
    new: list[int] = []
    shown = 0
    for token in tokens:
        new.append(token)
        stopped = tracker.push(token)
        if stream:
            end = tracker.safe_end()
            if end > shown:
                yield tracker.text[shown:end]
                shown = end
        if stopped:
            if not stream:
                yield tokenizer.decode(new[: tracker.tokens_before_stop()])
            return
    if stream:
        tracker.finish()  # no stop string came: what was held back, and pending bytes
        if len(tracker.text) > shown:
            yield tracker.text[shown:]
    else:
        yield tokenizer.decode(new)


def complete(model: NumpyGPT, tokenizer: Any, prompt: str, **options: Any) -> list[str]:
    """The continuations of ``prompt`` (``iter_completions``' options), one text each."""
    texts: dict[int, str] = {}
    for i, piece in iter_completions(model, tokenizer, prompt, **options):
        texts[i] = texts.get(i, "") + piece
    return [texts[i] for i in sorted(texts)]
