"""A batch that rows join and leave while it runs: continuous batching, for a server.

``stream_batch`` decodes a fixed set of requests: one that arrives while it runs waits for
the whole batch. A ``LiveBatch`` takes a new ``Request`` between any two steps:

>>> live = LiveBatch(model)                                               # doctest: +SKIP
>>> a = live.add(Request([1, 2, 3], GenerationConfig(50, temperature=0.8, seed=1)))
>>> events = live.step()        # one Event for row a                      # doctest: +SKIP
>>> b = live.add(Request([4, 5], GenerationConfig(5, temperature=0)))    # doctest: +SKIP
>>> events = live.step()        # one Event each for a and b              # doctest: +SKIP

``add`` returns the row's key (``Event.row``), ``step`` runs one model step for every row
and returns one ``Event`` per row still running (a row's last has its ``finish_reason``),
and ``end(key)`` stops a row early (a client that left). Rows end as in ``stream_batch``.
``last_logits[key]`` holds each row's raw logits of the last step (before any processor:
what a server's log-probs are taken from); ``why_not(request)`` says whether a request
can join now.

**How a row joins.** The model keeps one KV cache for the batch, each row's keys in the
cache's last slots (right-aligned), with the slots before them masked out, so a row's
positions and attention are those of its text alone. A new row's prompt is prefilled
alone in a cache of its own; the logits of that prefill give its first token, and before
the next step its keys are copied into the batch's cache. Whenever rows end or join, the
cache is rebuilt with the rows that remain: columns that only padding holds are dropped,
and it is made just long enough for the longest row's remaining tokens.

**Each row as if alone.** A row's tokens are those ``generate`` gives its request alone
(its own generator, its own processors, padding masked). On the C++ decode step
(``models/decode_kernel.py``) a row's logits are bitwise those of the row alone: the
kernel computes each row by itself and attends only to its real keys, in order.

**The sliding window.** A row whose cache holds ``context_length`` tokens leaves the
batch's cache for a step: its last ``context_length`` tokens are prefilled again, alone,
and it joins again, exactly what ``stream_generate`` does past the context (a prompt
longer than the context is prefilled on its last tokens, with a
``PromptTruncatedWarning``). Past its context a row costs a prefill per token, as alone.

**What it takes.** A model whose ``new_state`` is a ``KVCache``: the GPT.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from scratchllm.generation.batch import (
    Event,
    Request,
    RowText,
    chain_for,
    process_groups,
    processor_key,
)
from scratchllm.generation.config import normalise_seeds
from scratchllm.generation.inputs import (
    context_length_of,
    model_device,
    prepare_prompts,
    warn_if_truncated,
)
from scratchllm.generation.processors import LogitsProcessor, sample_tokens
from scratchllm.generation.runner import eval_mode
from scratchllm.generation.text import decode_function


def why_not_live(model: torch.nn.Module) -> str | None:
    """None when ``model`` can decode in a ``LiveBatch``; else why not, in words."""
    from scratchllm.models.layers.kv_cache import KVCache

    new_state = getattr(model, "new_state", None)
    state = new_state(1, 1) if callable(new_state) else None
    if not isinstance(state, KVCache):
        return (
            f"a LiveBatch needs a model whose new_state() is a KVCache (the GPT); "
            f"{type(model).__name__} has none: decode its requests with stream_batch"
        )
    return None


@dataclass(eq=False)
class _Row:
    key: int
    request: Request
    text: RowText
    generator: torch.Generator | None  # None: greedy
    history: list[int]  # prompt and generated tokens: what the repetition penalty reads
    cached: int  # slots of the row's keys in its cache (its last tokens, at most the context)
    state: Any = None  # its own KVCache, from the prefill until it joins the batch's
    logits: torch.Tensor | None = None  # (1, V) the prefill's, for the row's first token
    ended: bool = False
    chain_key: tuple = field(default=())  # rows with equal keys share one processor chain
    chain: Any = None  # the row's own chain, when it has processors of its own


class LiveBatch:
    """Requests that join and leave one running batch; see the module docstring.

    ``max_rows`` bounds how many rows run at once: ``add`` refuses one more.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        tokenizer: Any = None,
        logits_processor: Sequence[LogitsProcessor] = (),
        max_rows: int = 8,
    ) -> None:
        why = why_not_live(model)
        if why is not None:
            raise ValueError(why)
        if max_rows < 1:
            raise ValueError(f"max_rows ({max_rows}) must be at least 1")
        self.model = model
        self.extra = tuple(logits_processor)
        self.max_rows = max_rows
        self.decode = decode_function(tokenizer) if tokenizer is not None else None
        self.context_length = context_length_of(model)
        self.vocab_size = getattr(model, "vocab_size", None)
        self.device = model_device(model)
        self._rows: list[_Row] = []  # in the batch's cache, in its row order
        self._joining: list[_Row] = []  # prefilled; their first token comes from the prefill
        self._primed: list[_Row] = []  # first token drawn; they join the cache next step
        self._empty: list[Event] = []  # the events of rows asked for no tokens
        self._state: Any = None  # the batch's KVCache
        self._chains: dict[tuple, Any] = {}
        self._next_key = 0
        self._running = 0  # rows added and not yet ended (len)
        self._grouped: tuple = (None, None)  # (rows, their chains): see _groups
        self._changed = False  # a row has ended since the cache was last rebuilt
        self._feed: torch.Tensor | None = None  # [rows, 1] the next step's input, when known
        # The last step's raw logits (the model's, before any processor) and their rows' keys.
        self._last: tuple[list[int], torch.Tensor | None] = ([], None)

    def __len__(self) -> int:
        """The rows running: every row added and not yet ended."""
        return self._running

    @property
    def last_logits(self) -> dict[int, torch.Tensor]:
        """Each row's raw logits ``[V]`` at the last step, by key (views, made when asked:
        most steps nobody does)."""
        keys, logits = self._last
        return {key: logits[i] for i, key in enumerate(keys)}

    def why_not(self, request: Request) -> str | None:
        """None when ``request`` can join now; else why not (a full batch, a stop string
        without a tokenizer, an eos id outside the vocabulary)."""
        if not isinstance(request, Request):
            return f"a LiveBatch takes a Request, got {type(request).__name__}"
        c = request.config
        if c.stop and self.decode is None:
            return f"stop={list(c.stop)} needs tokenizer= (an object with decode(ids) -> str)"
        fill = c.fill_token_id
        if fill is not None and self.vocab_size is not None and fill >= self.vocab_size:
            return f"pad/eos id {fill} is outside the model's vocabulary [0, {self.vocab_size})"
        if len(self) >= self.max_rows:
            return f"the batch holds its max_rows ({self.max_rows}) rows: end one first"
        return None

    def add(self, request: Request) -> int:
        """Prefill ``request``'s prompt and make it a row; its key (``Event.row``). Its first
        token comes with the next ``step``."""
        why = self.why_not(request)
        if why is not None:
            raise ValueError(why)
        c = request.config
        prompt = prepare_prompts([list(request.prompt)], vocab_size=self.vocab_size)
        key, self._next_key = self._next_key, self._next_key + 1
        sampling = c.sampling
        seed = normalise_seeds(c.seed, 1)[0] if sampling else None
        row = _Row(
            key,
            request,
            RowText.of(c, self.decode),
            torch.Generator().manual_seed(seed) if sampling else None,
            list(request.prompt),
            cached=0,
            chain_key=processor_key(c),
        )
        if request.logits_processor:
            row.chain = chain_for(row.chain_key, (*self.extra, *request.logits_processor))
        if c.max_new_tokens == 0:
            row.ended = True
            self._empty.append(Event(key, None, "", "length"))
            return key
        warn_if_truncated(self.model, prompt, stacklevel=2)
        self._prefill(row)
        self._joining.append(row)
        self._running += 1
        return key

    def _prefill(self, row: _Row) -> None:
        """Row's last ``context_length`` tokens into a cache of its own; their logits give
        its next token (a new row, or one whose window slides)."""
        window = row.history[-self.context_length :]
        left = row.text.limit - row.text.count  # tokens still to come
        with self._eval(), torch.inference_mode():
            # room for the rest too: a row alone goes on in this cache (see _rebuild)
            row.state = self.model.new_state(1, min(self.context_length, len(window) + left))
            ids = torch.tensor([window], device=self.device)
            row.logits = self.model.forward_step(ids, row.state)[:, -1]
        row.cached = len(window)

    def end(self, key: int) -> None:
        """Stop row ``key`` from the next step on: no more events for it (no finish event
        either). A key that has ended already, or was never given, is ignored."""
        for row in (*self._rows, *self._primed, *self._joining):
            if row.key == key and not row.ended:
                row.ended = self._changed = True
                self._running -= 1

    def _state_full(self) -> bool:
        """Whether the batch's cache holds a row's whole context (the rows in it all grow
        by one a step, and the longest fills the cache's ``length``)."""
        return self._state is not None and self._state.length >= self.context_length

    def step(self) -> list[Event]:
        """One model step for every row: one ``Event`` per row still running."""
        events, self._empty = self._empty, []
        if self._joining:
            self._joining = [r for r in self._joining if not r.ended]
        feed, self._feed = self._feed, None
        if self._changed or self._primed or self._state_full():
            self._changed, feed = False, None
            # A row whose cache holds the whole context slides its window: prefilled again,
            # alone, on its last context_length tokens, as stream_generate does.
            full = [
                r
                for r in (*self._rows, *self._primed)
                if not r.ended and r.cached >= self.context_length
            ]
            self._rebuild(leaving=full)
            for row in full:
                self._prefill(row)
            self._joining += full
        if not self._rows and not self._joining:
            return events
        with self._eval(), torch.inference_mode():
            parts = []
            if self._rows:
                if feed is None:
                    feed = torch.tensor([[r.history[-1]] for r in self._rows], device=self.device)
                parts.append(self.model.forward_step(feed, self._state)[:, -1])
                for r in self._rows:
                    r.cached += 1
            parts += [r.logits for r in self._joining]
            rows = self._rows + self._joining if self._joining else self._rows
            logits = parts[0] if len(parts) == 1 else torch.cat(parts)  # (rows, V)
            self._last = [r.key for r in rows], logits
            tokens = self._draw(rows, self._process(rows, logits))
        for row, token in zip(rows, tokens.tolist()):
            event = row.text.advance(row.key, token)
            if event.finish_reason is not None:
                row.ended = self._changed = True
                self._running -= 1
            else:
                row.history.append(token)
            events.append(event)
        if not self._joining and not self._changed:  # the same rows next step: these tokens
            self._feed = tokens[:, None]
        for row in self._joining:
            row.logits = None
            if not row.ended:
                self._primed.append(row)
        self._joining = []
        return events

    # -- the cache ------------------------------------------------------------------------

    def _rebuild(self, leaving: list[_Row]) -> None:
        """Drop the ended rows and those ``leaving`` from the cache and put the primed ones
        in (see the module docstring); nothing when neither happened."""
        old, old_index = self._state, {id(r): i for i, r in enumerate(self._rows)}
        gone = {id(r) for r in leaving}
        keep = [r for r in self._rows if not r.ended and id(r) not in gone]
        new = [r for r in self._primed if not r.ended and id(r) not in gone]
        self._primed = []
        if len(keep) == len(self._rows) and not new:
            return
        rows = keep + new
        self._rows = rows
        if not rows:
            self._state = None
            return
        if len(rows) == 1 and rows[0].state is not None:  # a row alone: its own cache
            self._state, rows[0].state = rows[0].state, None
            return
        width = max(r.cached for r in rows)  # the longest row's slots, right-aligned
        left = max(r.text.limit - r.text.count for r in rows)  # tokens still to be fed
        # The cache need not outgrow the context: a row that fills it slides (step).
        size = min(self.context_length, width + left)
        state = self.model.new_state(len(rows), size)
        mask = torch.zeros(len(rows), size, dtype=torch.bool, device=self.device)
        for i, row in enumerate(rows):
            n = row.cached
            if row.state is not None:  # its own cache: the prompt from slot 0
                src, j, end = row.state, 0, n
            else:
                src, j, end = old, old_index[id(row)], old.length
            for dst_t, src_t in zip((*state.keys, *state.values), (*src.keys, *src.values)):
                dst_t[i, :, width - n : width] = src_t[j, :, end - n : end]
            mask[i, width - n : width] = True
            row.state = None
        state.length = state.max_position = width
        if any(r.cached < width for r in rows):  # else no padding: the unmasked fast path
            state.key_mask = mask
            state.positions = torch.tensor([r.cached for r in rows], device=self.device)
        self._state = state

    # -- logits to tokens -----------------------------------------------------------------

    def _process(self, rows: list[_Row], logits: torch.Tensor) -> torch.Tensor:
        """Each row's chain on its logits: rows with equal settings share one call, a row
        with processors of its own (``Request.logits_processor``) runs its own chain on its
        history alone."""
        groups, own = self._groups(rows)
        if groups:
            logits = process_groups(groups, self._input_ids(rows), logits)
        if own:
            logits = logits.clone()  # the raw logits stay as they are (last_logits)
            for i in own:
                ids = torch.tensor([rows[i].history], device=self.device)
                logits[i : i + 1] = rows[i].chain(ids, logits[i : i + 1])
        return logits

    def _groups(self, rows: list[_Row]) -> tuple[list, list[int]]:
        """``(groups, own)``: the shared chains with their rows (None: every row) and the
        rows with processors of their own. Kept while ``rows`` is the same list (``step``
        passes ``self._rows`` itself until the rows change)."""
        if rows is self._grouped[0]:
            return self._grouped[1]
        by_key: dict[tuple, list[int]] = {}
        own = []
        for i, r in enumerate(rows):
            (own if r.chain is not None else by_key.setdefault(r.chain_key, [])).append(i)
        groups = []
        for key, idx in by_key.items():
            if key not in self._chains:
                self._chains[key] = chain_for(key, self.extra)
            if self._chains[key]:
                groups.append((None if len(by_key) == 1 and not own else idx, self._chains[key]))
        self._grouped = rows, (groups, own)
        return groups, own

    def _input_ids(self, rows: list[_Row]) -> torch.Tensor:
        """``[rows, longest]`` each row's history, left-padded with its own first token
        (processors read which ids occur, never where; see ``stream_batch``), or an empty
        ``[rows, 0]`` when no processor reads the ids."""
        if not self.extra and all(r.request.config.repetition_penalty == 1.0 for r in rows):
            return torch.empty(len(rows), 0, dtype=torch.long, device=self.device)
        n = max(len(r.history) for r in rows)
        padded = [[r.history[0]] * (n - len(r.history)) + r.history for r in rows]
        return torch.tensor(padded, device=self.device)

    @staticmethod
    def _draw(rows: list[_Row], logits: torch.Tensor) -> torch.Tensor:
        sampled = [i for i, r in enumerate(rows) if r.generator is not None]
        if len(sampled) == len(rows):
            return sample_tokens(logits, [r.generator for r in rows])
        tokens = logits.argmax(-1)
        if sampled:
            tokens[sampled] = sample_tokens(logits[sampled], [rows[i].generator for i in sampled])
        return tokens

    def _eval(self):
        """The model in eval mode for a call (dropout off); nothing to do when it is."""
        return eval_mode(self.model) if self.model.training else contextlib.nullcontext()
