"""Text in, text out: a saved model continues a prompt. What ``scratchllm sample`` does.

``load_model(path)`` reads a checkpoint (``scratchllm.checkpoint``) ready for generation;
``complete(model, tokenizer, prompt, ...)`` returns the continuations of a prompt (sampled,
greedy or by beam search, through ``scratchllm.generation``), and ``iter_completions``
yields them as they are made, for a terminal or a server to show::

    >>> model, tok = load_model("runs/demo")                              # doctest: +SKIP
    >>> complete(model, tok, "Return the", num_samples=2, seed=0)          # doctest: +SKIP
    [' value of the ...', ' number of ...']

Sample ``i`` is seeded ``seed + i`` (as ``generate`` seeds row i of a batch), so a sample is
the same whether it was asked for alone or among others.

A chat-tuned checkpoint answers conversations (what ``scratchllm chat`` does):
``load_chat_model(path)`` gives the model and its ``ChatTemplate``, ``iter_reply(model,
template, messages)`` streams the reply, which ends at the template's end token.

The prompt helpers (``encode_prompt``, ``check_options``) import no torch: the NumPy
engine's sampler (``scratchllm.numpy_gpt.textgen``) shares them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from scratchllm.data.chat import TEMPLATE_FILE, ChatTemplate, Message
from scratchllm.tokenizers.char import UnknownCharacterError

if TYPE_CHECKING:  # torch is imported where a model is: the prompt helpers need none
    from scratchllm.models.base import LanguageModel
    from scratchllm.tokenizers.base import Tokenizer


def load_model(
    path: str | Path, best: bool = False, device: str = "cpu"
) -> tuple[LanguageModel, Tokenizer]:
    """The model (in eval mode) and tokenizer of a run directory (its ``last/``, or
    ``best/``) or a checkpoint directory."""
    from scratchllm.checkpoint import BEST, LAST, load_checkpoint

    ckpt = load_checkpoint(path, device=device, which=BEST if best else LAST)
    return ckpt.model.eval(), ckpt.tokenizer


def encode_prompt(tokenizer: Tokenizer, text: str) -> tuple[list[int], str]:
    """``(ids, the characters the tokenizer reads as <unk>)``. An empty prompt starts from
    a newline (or token 0): every model needs one token to condition on."""
    if not text:
        try:
            return tokenizer.encode("\n") or [0], ""
        except ValueError:
            return [0], ""
    try:
        ids = tokenizer.encode(text)
    except UnknownCharacterError as e:
        raise ValueError(
            f"the prompt's {e.what} is not one of the {e.vocab_size} tokens of this model's "
            "tokenizer (the model never saw it in training): leave it out of the prompt"
        ) from None
    except ValueError as e:
        raise ValueError(f"the prompt cannot be encoded by this model's tokenizer: {e}") from None
    unk = getattr(tokenizer, "unk_id", None)
    unknown = ""
    if unk is not None and unk in ids:
        unknown = "".join(sorted({c for c in text if tokenizer.encode(c) == [unk]}))
    return ids or [0], unknown


def iter_completions(
    model: LanguageModel,
    tokenizer: Tokenizer,
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
    """Yield ``(i, text)`` pieces of the continuations of ``prompt``: ``(i, "")`` when
    sample ``i`` starts, then its text, in one piece or (``stream``) as it is generated.

    ``num_beams`` > 1 is beam search: ``num_samples`` of its best beams (no sampling, no
    stop strings, no streaming). Otherwise each sample is drawn with the processors
    ``temperature`` (0: greedy), ``top_k``, ``top_p`` and ``repetition_penalty`` and ends
    before a ``stop`` string.
    """
    from scratchllm.generation import beam_search, generate, stream_generate

    check_options(max_new_tokens, num_samples, num_beams, stream)
    ids, _ = encode_prompt(tokenizer, prompt)
    if num_beams > 1:
        result = beam_search(
            model,
            [ids],
            max_new_tokens,
            num_beams,
            num_return_sequences=num_samples,
            repetition_penalty=repetition_penalty,
        )
        for r in range(num_samples):
            new = int(result.new_tokens[0, r])
            yield r, ""
            yield r, tokenizer.decode(result.sequences[0, r, len(ids) : len(ids) + new].tolist())
        return
    kw = dict(
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        stop=stop,
        tokenizer=tokenizer,
    )
    for i in range(num_samples):
        row_seed = None if seed is None else seed + i
        yield i, ""
        if stream:
            for piece in stream_generate(model, ids, max_new_tokens, seed=row_seed, **kw):
                yield i, piece
            continue
        out = generate(model, [ids], max_new_tokens, seed=row_seed, **kw)
        yield i, tokenizer.decode(out[0, len(ids) :].tolist())


def complete(
    model: LanguageModel, tokenizer: Tokenizer, prompt: str, **options: object
) -> list[str]:
    """The continuations of ``prompt`` (``iter_completions``' options), one text each."""
    texts: dict[int, str] = {}
    for i, piece in iter_completions(model, tokenizer, prompt, **options):  # type: ignore[arg-type]
        texts[i] = texts.get(i, "") + piece
    return [texts[i] for i in sorted(texts)]


def check_options(max_new_tokens: int, num_samples: int, num_beams: int, stream: bool) -> None:
    """Refuse option combinations ``iter_completions`` cannot honour, naming the flag."""
    for name, value, least in (
        ("max_new_tokens", max_new_tokens, 0),
        ("num_samples", num_samples, 1),
        ("num_beams", num_beams, 1),
    ):
        if value < least:
            raise ValueError(f"--{name.replace('_', '-')} must be at least {least}, got {value}")
    if num_beams > 1:
        if stream:
            raise ValueError("--stream works with sampling or greedy decoding, not --num-beams")
        if num_samples > num_beams:
            raise ValueError(
                f"--num-samples ({num_samples}) must not exceed --num-beams ({num_beams}): "
                "beam search returns its best beams"
            )


# -- chat ----------------------------------------------------------------------------------


def load_chat_model(
    path: str | Path, best: bool = False, device: str = "cpu"
) -> tuple[LanguageModel, ChatTemplate]:
    """The model (in eval mode) and chat template of a chat-tuned checkpoint: one whose
    directory holds ``chat_template.json`` with role and end tokens. A base model has none
    and is refused with what to do instead."""
    from scratchllm.checkpoint import BEST, LAST, load_checkpoint

    ckpt = load_checkpoint(path, device=device, which=BEST if best else LAST)
    if not (ckpt.path / TEMPLATE_FILE).is_file():
        raise ValueError(
            f"{ckpt.path} has no chat template ({TEMPLATE_FILE}): it is a base model, which "
            "continues text rather than answering. Fine-tune it for chat (scratchllm finetune "
            f"sft --from {path} --data stdlib-instructions --out DIR) or continue text with "
            f"scratchllm sample {path}"
        )
    template = ChatTemplate.load(ckpt.path)
    if not template.special_tokens:
        raise ValueError(
            f"{ckpt.path}'s template is plain (no role or end tokens: it was fine-tuned on a "
            f"task's prompt + answer format), so it has no turns to chat in; use scratchllm "
            f"sample {path} --prompt ..., or scratchllm eval {path} --task SPEC"
        )
    return ckpt.model.eval(), template


def fit_conversation(
    template: ChatTemplate, messages: Sequence[Message], limit: int
) -> list[Message]:
    """``messages`` without their oldest turns (a system message stays) until the prompt
    they render to fits in ``limit`` tokens; at least the last message is kept."""
    kept = list(messages)
    while len(kept) > 1 and len(template.render_prompt(kept)) > limit:
        first = 1 if kept[0].role == "system" and len(kept) > 2 else 0
        del kept[first]
    return kept


def iter_reply(
    model: LanguageModel,
    template: ChatTemplate,
    messages: Sequence[Message],
    *,
    max_new_tokens: int = 200,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
) -> Iterator[str]:
    """The assistant's reply to ``messages``, in text pieces as it is generated.

    The prompt is ``template.render_prompt`` (the conversation, then the assistant token),
    its oldest turns dropped when it would not leave room for the reply in the model's
    context; the reply ends at the end-of-turn token (or any role token: a new turn).
    """
    room = max(1, model.context_length - min(max_new_tokens, model.context_length // 2))
    ids = template.render_prompt(fit_conversation(template, messages, room))
    from scratchllm.generation import stream_generate

    stops = [template.tokenizer.special_tokens[t] for t in template.special_tokens]
    yield from stream_generate(
        model,
        ids[-model.context_length :],
        max_new_tokens,
        tokenizer=template.tokenizer,
        temperature=temperature if temperature > 0 else 1.0,
        do_sample=temperature > 0,
        top_k=top_k,
        top_p=top_p,
        eos_token_id=stops,
        seed=seed,
    )
