"""Task evaluation: give a model the prompts of a language with answers, score what it writes.

A language with answers (``addition``, ``copy``) splits each sample at its ``answer_mask``:
the prompt is the part before the answer ("37+45="), the completion the rest ("82\\n").
``evaluate_task`` draws N held-out prompts, generates each completion with
``scratchllm.generation.generate`` (greedy unless told; left-padded batches), and reports:

- **accuracy**: exact match of the final answer (for addition with a scratchpad, the answer
  after the steps: ``Addition.final_answer``; for other languages the whole completion);
- **valid**: every symbol of the completion right (the steps too): the language's verifier;
- for the scratchpad formats, **steps_correct** (every step right) and the distribution of the
  **first wrong step**;
- for addition, every figure **by operand length** (the longer operand's digits, and the pair
  "1+3") and **by number of carries** (``Addition.prompt_groups``);
- with ``k > 1`` samples per prompt, pass@k (``scratchllm.metrics.pass_at_k``, unbiased).

**Held out.** Prompts are drawn from ``random.Random(seed)`` with ``seed=EVAL_SEED`` by default,
a seed training data does not use (it uses 0 unless told), and are distinct. Pass the training
samples (or their prompts) as ``exclude`` and every prompt among them is skipped, so nothing is
scored on a question it trained on; ``keep`` is a further filter on prompts (e.g. a hash split
shared with the fine-tuning data). The result says how many draws were skipped.

**Completions.** A completion ends at the first END (kept: the model must say it is done), at
a token of ``stop_ids`` (e.g. a chat template's end-of-turn; it counts as END), or after
``max_new_tokens``, when it is unfinished and wrong. ``render`` turns prompt text into the ids
the model is given: by default ``tokenizer.encode(END + prompt)``, since in a training stream
every sample follows an END; a chat-tuned model takes
``render=lambda p: template.render_prompt([{"role": "user", "content": p}])`` and
``stop_ids=[template.end_id]``.

>>> result = evaluate_task(model, tok, "addition:digits=3,operands=balanced")  # doctest: +SKIP
>>> result.accuracy, [(g.key, g.accuracy) for g in result.by["length"]]      # doctest: +SKIP
(0.71, [('1', 0.12), ('2', 0.85), ('3', 0.93)])
"""

from __future__ import annotations

import random
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from scratchllm.data.languages import END, Language, get
from scratchllm.generation import PromptTruncatedWarning, generate
from scratchllm.generation.runner import context_length_of
from scratchllm.metrics import mean_pass_at_k

EVAL_SEED = 1_000_003  # the default seed of held-out prompts; training data uses 0 unless told
PromptRenderer = Callable[[str], Sequence[int]]  # prompt text -> the token ids a model is given


# ---- prompts ------------------------------------------------------------------------------


def split_prompt(language: Language, sample: str) -> tuple[str, str]:
    """``(prompt, completion)`` of a sample: the part before its answer and the answer.

    >>> split_prompt(get("addition"), "37+45=82\\n")
    ('37+45=', '82\\n')
    """
    mask = language.answer_mask(sample)
    start = mask.index(True) if True in mask else len(sample)
    if start == 0 or not all(mask[start:]):
        raise ValueError(
            f"language {language.name!r} has no answer to complete: its answer mask on "
            f"{sample!r} is not a prompt followed by an answer. Tasks are languages with an "
            "answer, e.g. 'addition:digits=3' or 'copy:length=8'"
        )
    return sample[:start], sample[start:]


def prompt_of(language: Language, text: str) -> str:
    """The prompt of a sample, or ``text`` itself when it is a prompt already."""
    mask = language.answer_mask(text)
    return text[: mask.index(True)] if True in mask else text


@dataclass(frozen=True)
class HeldOut:
    """Distinct held-out prompts with their right completions."""

    prompts: list[str]
    expected: list[str]  # the right completion of each prompt (END included)
    seed: int
    skipped: int  # draws skipped: excluded (seen in training) or not kept
    excluded: int | None  # distinct prompts given to exclude (None: no training data given)


def heldout_prompts(
    language: Language,
    n: int,
    seed: int = EVAL_SEED,
    exclude: Iterable[str] | None = None,
    keep: Callable[[str], bool] | None = None,
) -> HeldOut:
    """``n`` distinct prompts from ``random.Random(seed)``, none among ``exclude`` (samples or
    prompts) and each passing ``keep``; a clear error when the language has too few."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n ({n!r}) must be a positive number of prompts")
    given = exclude is not None
    seen = {prompt_of(language, s) for s in exclude or ()}
    rng = random.Random(seed)
    prompts: list[str] = []
    expected: list[str] = []
    chosen: set[str] = set()
    skipped, draws, limit = 0, 0, 50 * n + 1000
    while len(prompts) < n:
        if draws >= limit:
            raise ValueError(
                f"{language.spec}: after {draws} draws only {len(prompts)} distinct held-out "
                f"prompts (of {n} asked; {skipped} were seen in training or not kept): the "
                "language has too few prompts; ask for fewer (--n) or a larger language"
            )
        draws += 1
        prompt, completion = split_prompt(language, language.sample(rng))
        if prompt in chosen:
            continue
        if prompt in seen or (keep is not None and not keep(prompt)):
            skipped += 1
            continue
        chosen.add(prompt)
        prompts.append(prompt)
        expected.append(completion)
    return HeldOut(prompts, expected, seed, skipped, len(seen) if given else None)


# ---- the result ------------------------------------------------------------------------------


@dataclass
class Item:
    """One prompt: what the model wrote (one completion per sample) and how it scored."""

    prompt: str
    expected: str
    completions: list[str]
    correct: list[bool]  # the final answer matches
    valid: list[bool]  # the whole completion is right
    first_wrong_step: list[int | None]  # scratchpad formats: 1 = units; None: every step right
    groups: dict[str, int | str]  # e.g. {"length": 3, "lengths": "1+3", "carries": 1}


@dataclass
class Group:
    """One row of a breakdown table: the prompts whose group value is ``key``."""

    key: str
    n: int  # prompts
    accuracy: float
    valid: float
    steps_correct: float | None


@dataclass
class TaskResult:
    task: str  # the language spec
    n: int  # prompts
    samples: int  # completions per prompt
    decoding: dict[str, Any]  # temperature (0 = greedy), top_k, seed
    accuracy: float  # final answers that match, over all completions (= pass@1)
    valid: float  # completions right in every symbol
    steps_correct: float | None  # completions with every step right (scratchpad formats)
    first_wrong_step: dict[int, int]  # step -> completions whose first wrong step it is
    pass_at_k: dict[int, float]  # k -> unbiased pass@k (with samples > 1)
    by: dict[str, list[Group]]  # breakdown name -> rows, e.g. by["length"], by["carries"]
    heldout: dict[str, int | None]  # seed, skipped draws, excluded training prompts
    items: list[Item] = field(repr=False, default_factory=list)

    def to_dict(self, items: bool = False) -> dict[str, Any]:
        """Everything as JSON-ready values; ``items=True`` adds every prompt's completions,
        otherwise a few wrong ones are given as examples."""
        out = asdict(self)
        out["first_wrong_step"] = {str(k): v for k, v in self.first_wrong_step.items()}
        out["pass_at_k"] = {str(k): v for k, v in self.pass_at_k.items()}
        out.pop("items")
        if items:
            out["items"] = [asdict(it) for it in self.items]
        else:
            out["wrong_examples"] = self.wrong_examples()
        return out

    def wrong_examples(self, limit: int = 5) -> list[dict[str, str]]:
        out = []
        for it in self.items:
            for text, ok in zip(it.completions, it.correct):
                if not ok and len(out) < limit:
                    out.append({"prompt": it.prompt, "completion": text, "expected": it.expected})
        return out

    def format_table(self) -> str:
        """A plain-text report for people: the headline figures, then each breakdown."""
        dec = (
            "greedy"
            if self.decoding["temperature"] == 0
            else (
                f"sampling (temperature {self.decoding['temperature']}, top-k "
                f"{self.decoding['top_k']}, seed {self.decoding['seed']})"
            )
        )
        lines = [
            f"task      {self.task}",
            f"prompts   {self.n} held out (seed {self.heldout['seed']}; "
            f"{_exclusion(self.heldout)})",
            f"decoding  {dec}, {self.samples} completion(s) per prompt",
            f"accuracy  {self.accuracy:.4f}  (exact match of the final answer)",
            f"valid     {self.valid:.4f}  (every symbol of the completion right)",
        ]
        if self.steps_correct is not None:
            lines.append(f"steps     {self.steps_correct:.4f}  (every scratchpad step right)")
            if self.first_wrong_step:
                shown = ", ".join(f"{k}: {v}" for k, v in sorted(self.first_wrong_step.items()))
                lines.append(f"first wrong step (1 = units): {shown}")
        for k, v in self.pass_at_k.items():
            lines.append(f"pass@{k:<5} {v:.4f}")
        for name, rows in self.by.items():
            lines += ["", f"by {name}", _rows_table(name, rows)]
        wrong = self.wrong_examples(3)
        if wrong:
            lines += ["", "wrong, e.g.:"]
            lines += [
                f"  {w['prompt']!r} -> {w['completion']!r} (right: {w['expected']!r})"
                for w in wrong
            ]
        return "\n".join(lines)


def _exclusion(heldout: dict[str, int | None]) -> str:
    if heldout["excluded"] is None:
        return "no training prompts given to exclude"
    return f"{heldout['excluded']} training prompts excluded, {heldout['skipped']} draws skipped"


def _rows_table(name: str, rows: list[Group]) -> str:
    steps = any(r.steps_correct is not None for r in rows)
    head = [name, "prompts", "accuracy", "valid"] + (["steps"] if steps else [])
    body = [
        [r.key, str(r.n), f"{r.accuracy:.4f}", f"{r.valid:.4f}"]
        + ([f"{r.steps_correct:.4f}"] if steps else [])
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in [head, *body])


# ---- the evaluation -----------------------------------------------------------------------------


def evaluate_task(
    model: torch.nn.Module,
    tokenizer: Any,
    task: str | Language,
    n: int = 200,
    *,
    seed: int = EVAL_SEED,
    exclude: Iterable[str] | None = None,
    keep: Callable[[str], bool] | None = None,
    temperature: float = 0.0,
    top_k: int | None = None,
    sample_seed: int = 0,
    k: int = 1,
    batch_size: int = 64,
    max_new_tokens: int | None = None,
    render: PromptRenderer | None = None,
    stop_ids: Sequence[int] = (),
) -> TaskResult:
    """Score ``model`` on ``n`` held-out prompts of ``task`` (see the module docstring).

    ``temperature=0`` is greedy; otherwise sampled (``top_k``), completion j of prompt i from
    seed ``sample_seed + i * k + j``, so the result does not depend on ``batch_size``. ``k``
    completions per prompt give pass@k and need sampling. ``max_new_tokens`` defaults to the
    longest right completion in tokens, plus 4.
    """
    language = get(task) if isinstance(task, str) else task
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k ({k!r}) must be a positive number of completions per prompt")
    if k > 1 and temperature == 0:
        raise ValueError(
            f"k={k} completions per prompt need sampling: greedy decoding writes the same one "
            "k times; give a temperature > 0"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size ({batch_size}) must be at least 1")
    render = render or (lambda prompt: tokenizer.encode(END + prompt))
    held = heldout_prompts(language, n, seed, exclude, keep)
    if max_new_tokens is None:
        max_new_tokens = max(len(tokenizer.encode(c)) for c in held.expected) + 4
    texts = generate_completions(
        model,
        tokenizer,
        [list(render(p)) for p in held.prompts],
        max_new_tokens,
        k=k,
        temperature=temperature,
        top_k=top_k,
        seed=sample_seed,
        batch_size=batch_size,
        stop_ids=stop_ids,
    )
    items = [
        _judge(language, p, e, texts[i])
        for i, (p, e) in enumerate(zip(held.prompts, held.expected))
    ]
    decoding = {"temperature": temperature, "top_k": top_k, "seed": sample_seed}
    return _summarise(language, items, k, decoding, held)


def generate_completions(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    k: int = 1,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    stop_ids: Sequence[int] = (),
) -> list[list[str]]:
    """``k`` completions (text up to END) of each prompt's ids, through ``generate`` in
    batches of prompts of equal length (left-padded where lengths still mix). Completion j of
    prompt i is sampled from seed ``seed + i * k + j``, so batching changes nothing."""
    end_ids = tokenizer.encode(END)
    stops = list(stop_ids) + (end_ids if len(end_ids) == 1 else [])
    longest = max(len(p) for p in prompts)
    if longest > context_length_of(model):  # once here, not once per batch
        warnings.warn(
            f"prompts of up to {longest} tokens are longer than the model's context of "
            f"{context_length_of(model)}: it sees only their last tokens",
            PromptTruncatedWarning,
            stacklevel=3,
        )
    # Prompts of one length batch together: no padding, so a model without a KV cache runs
    # one forward per step instead of one per padded row (the seeds follow (i, j), not order).
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    rows = [(i, j) for i in order for j in range(k)]
    texts: list[list[str]] = [[""] * k for _ in prompts]
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PromptTruncatedWarning)
            out = generate(
                model,
                [list(prompts[i]) for i, _ in batch],
                max_new_tokens,
                temperature=temperature if temperature > 0 else 1.0,
                do_sample=temperature > 0,
                top_k=top_k,
                eos_token_id=stops or None,
                pad_token_id=stops[0] if stops else 0,
                seed=[seed + i * k + j for i, j in batch],
            )
        T = max(len(prompts[i]) for i, _ in batch)  # the left-padded prompt width
        for (i, j), row in zip(batch, out[:, T:].tolist()):
            texts[i][j] = _completion(row, tokenizer, set(stop_ids), set(stops))
    return texts


def _completion(row: list[int], tokenizer: Any, eos: set[int], stops: set[int]) -> str:
    """The text of one generated row up to its first END; a stop token that is not END counts
    as one (a chat end-of-turn); a row that hit neither is returned unfinished."""
    cut = next((t for t, tok in enumerate(row) if tok in stops), None)
    ended_by_eos = cut is not None and row[cut] in eos
    text = tokenizer.decode(row[: cut if ended_by_eos else (None if cut is None else cut + 1)])
    at = text.find(END)
    if at >= 0:
        return text[: at + 1]
    return text + END if ended_by_eos else text


def _judge(language: Language, prompt: str, expected: str, completions: list[str]) -> Item:
    grade = getattr(language, "grade", None)
    correct, valid, first = [], [], []
    for c in completions:
        if grade is not None:
            g = grade(prompt + c)
            correct.append(g.answer_correct)
            valid.append(g.valid)
            first.append(g.first_wrong_step)
        else:
            correct.append(c == expected)
            valid.append(language.verify(prompt + c).valid)
            first.append(None)
    groups = getattr(language, "prompt_groups", None)
    return Item(
        prompt, expected, completions, correct, valid, first, groups(prompt) if groups else {}
    )


def _mean(values: Iterable[bool]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def _summarise(
    language: Language, items: list[Item], k: int, decoding: dict[str, Any], held: HeldOut
) -> TaskResult:
    has_steps = bool(getattr(language, "has_steps", False))
    flat = [(it, j) for it in items for j in range(k)]
    steps = _mean(it.first_wrong_step[j] is None for it, j in flat) if has_steps else None
    first = Counter(it.first_wrong_step[j] for it, j in flat if it.first_wrong_step[j] is not None)
    pass_at = {}
    if k > 1:
        counts = [(k, sum(it.correct)) for it in items]
        for kk in sorted({1, *(2**e for e in range(1, k.bit_length()) if 2**e <= k), k}):
            pass_at[kk] = mean_pass_at_k(counts, kk)
    by: dict[str, list[Group]] = {}
    names = list(items[0].groups) if items else []
    for name in names:
        pools: dict[Any, list[Item]] = defaultdict(list)
        for it in items:
            pools[it.groups[name]].append(it)
        rows = []
        for key in sorted(pools, key=_sort_key):
            pool = [(it, j) for it in pools[key] for j in range(k)]
            rows.append(
                Group(
                    key=str(key),
                    n=len(pools[key]),
                    accuracy=_mean(it.correct[j] for it, j in pool),
                    valid=_mean(it.valid[j] for it, j in pool),
                    steps_correct=_mean(it.first_wrong_step[j] is None for it, j in pool)
                    if has_steps
                    else None,
                )
            )
        by[name] = rows
    return TaskResult(
        task=language.spec,
        n=len(items),
        samples=k,
        decoding=decoding,
        accuracy=_mean(it.correct[j] for it, j in flat),
        valid=_mean(it.valid[j] for it, j in flat),
        steps_correct=steps,
        first_wrong_step=dict(sorted(first.items())),
        pass_at_k=pass_at,
        by=by,
        heldout={"seed": held.seed, "skipped": held.skipped, "excluded": held.excluded},
        items=items,
    )


def _sort_key(key: Any) -> tuple:
    """Numbers in order, and "1+3"-style pairs by their parts."""
    if isinstance(key, int):
        return (key,)
    return tuple(int(p) if p.isdigit() else p for p in str(key).split("+"))
