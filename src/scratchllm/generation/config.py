"""Every generation setting in one validated dataclass.

Names follow Hugging Face's ``generate`` where they mean the same thing; ``stop`` is the
OpenAI API's name because, as there, the stop text is left out of the output (Hugging
Face's ``stop_strings`` keeps it).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scratchllm.generation.processors import check_sampling_args


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int  # how many tokens to add at most (fewer if every row stops early)
    temperature: float = 1.0  # 0 = greedy (as in the OpenAI API); < 1 sharper, > 1 flatter
    top_k: int | None = None  # sample among the k most likely tokens only
    top_p: float | None = None  # sample among the most likely tokens holding mass top_p
    repetition_penalty: float = 1.0  # > 1 discourages tokens already present (HF semantics)
    do_sample: bool | None = None  # None: sample unless temperature is 0 or num_beams > 1
    num_beams: int = 1  # > 1: beam search (deterministic)
    length_penalty: float = 1.0  # beam score = sum log p / (new tokens) ** length_penalty
    early_stopping: bool | str = False  # beam search: True, False (heuristic) or "never"
    num_return_sequences: int = 1  # beam search: how many of the best beams to return
    eos_token_id: int | tuple[int, ...] | None = None  # a row ends after it emits one of these
    pad_token_id: int | None = None  # fills left padding and rows that ended (default: eos)
    stop: tuple[str, ...] = ()  # stop strings (need a tokenizer); excluded from the output
    use_cache: bool = True  # incremental decoding when the model supports it
    seed: int | tuple[int, ...] | None = None  # row b uses seed + b (or seed[b])

    def __post_init__(self) -> None:
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an integer >= 0, got {self.max_new_tokens!r}")
        check_sampling_args(self.temperature, self.top_k, self.top_p, self.repetition_penalty)
        if not _is_int(self.num_beams) or self.num_beams < 1:
            raise ValueError(f"num_beams must be an integer >= 1, got {self.num_beams!r}")
        if self.num_beams > 1 and self.do_sample:
            raise ValueError(
                f"beam search (num_beams={self.num_beams}) is deterministic; "
                "set do_sample=False or num_beams=1"
            )
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(
                f"early_stopping must be True, False or 'never', got {self.early_stopping!r}"
            )
        if not _is_int(self.num_return_sequences) or not (
            1 <= self.num_return_sequences <= self.num_beams
        ):
            raise ValueError(
                f"num_return_sequences ({self.num_return_sequences}) must be between 1 and "
                f"num_beams ({self.num_beams})"
            )
        eos = self.eos_token_id
        if eos is not None:
            eos = (eos,) if _is_int(eos) else tuple(eos)
            if not eos or not all(_is_int(e) and e >= 0 for e in eos):
                raise ValueError(f"eos_token_id must be ids >= 0, got {self.eos_token_id!r}")
            object.__setattr__(self, "eos_token_id", eos)
        if self.pad_token_id is not None and (
            not _is_int(self.pad_token_id) or self.pad_token_id < 0
        ):
            raise ValueError(f"pad_token_id must be an id >= 0, got {self.pad_token_id!r}")
        stop = self.stop
        if isinstance(stop, str):
            stop = (stop,)
        stop = tuple(stop or ())
        if not all(isinstance(s, str) and s for s in stop):
            raise ValueError(f"stop must be non-empty strings, got {self.stop!r}")
        object.__setattr__(self, "stop", stop)
        if stop and self.num_beams > 1:
            raise ValueError("stop strings work with greedy decoding and sampling, not beams")
        if self.seed is not None and not _is_int(self.seed):
            object.__setattr__(self, "seed", tuple(int(s) for s in self.seed))

    @property
    def sampling(self) -> bool:
        """Whether tokens are drawn at random (else the most likely one is taken)."""
        if self.num_beams > 1 or self.temperature == 0:
            return False
        return True if self.do_sample is None else bool(self.do_sample)

    @property
    def fill_token_id(self) -> int | None:
        """What pads the rows that ended: pad_token_id, else the first eos id."""
        if self.pad_token_id is not None:
            return self.pad_token_id
        return self.eos_token_id[0] if self.eos_token_id else None


# Every setting's name: what generate(), stream_generate() and beam_search() take as keywords.
SETTINGS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(GenerationConfig))


def resolve_config(
    caller: str,
    config: GenerationConfig | None,
    max_new_tokens: int | None,
    settings: dict[str, Any],
) -> GenerationConfig:
    """The settings of one call: ``config`` (or the defaults) with ``max_new_tokens`` and the
    keyword ``settings`` laid over it. An unknown keyword is a TypeError naming the closest
    setting, as Python names an unknown argument.

    >>> resolve_config("generate", None, 5, {"temperature": 0}).temperature
    0
    >>> resolve_config("generate", GenerationConfig(8, top_k=3), None, {}).max_new_tokens
    8
    """
    unknown = [name for name in settings if name not in SETTINGS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], SETTINGS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TypeError(
            f"{caller}() got an unknown setting {unknown[0]!r}{hint}; the settings are "
            f"GenerationConfig's fields: {', '.join(SETTINGS)}"
        )
    if config is not None and not isinstance(config, GenerationConfig):
        raise TypeError(f"config must be a GenerationConfig, got {type(config).__name__}")
    if max_new_tokens is not None:
        settings = {**settings, "max_new_tokens": max_new_tokens}
    if config is None:
        if "max_new_tokens" not in settings:
            raise TypeError(f"{caller}() needs max_new_tokens (or config=GenerationConfig(...))")
        return GenerationConfig(**settings)
    return dataclasses.replace(config, **settings) if settings else config


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def normalise_seeds(seed: int | Sequence[int] | None, batch_size: int) -> list[int]:
    """One seed per row: ``seed + b``, the given list, or fresh OS entropy."""
    import torch

    if seed is None:
        seed = torch.Generator().seed() % (2**62)  # non-deterministic, local to this call
    if _is_int(seed):
        return [seed + b for b in range(batch_size)]
    seeds = list(seed)
    if len(seeds) != batch_size:
        raise ValueError(f"seed has {len(seeds)} entries for {batch_size} prompts; give one each")
    return seeds
