"""Mainstream LLMs on our languages: few-shot prompt any OpenAI-compatible endpoint with valid
samples of a rule-based language, ask for new ones, and verify them exactly.

For each language, a request shows ``shots`` valid samples and asks for more:

* ``api="chat"``: a user message lists the samples one per line and asks for
  ``per_request`` new ones, one per line, nothing else;
* ``api="completions"`` (base models, such as ours under ``scratchllm serve``): the prompt
  is the samples themselves, each ending with the end-of-sample newline, and the
  continuation's lines are the new samples (a last line cut by ``max_tokens`` is dropped).

**Parsing** is the same for both: every non-empty line, with list markers ("1. ", "- ",
"* "), wrapping quotes or backticks and code fences removed, is one sample; nothing else
is changed, and the verifier sees the line plus the end-of-sample marker.

**Measures**, as the study defines them for trained models: *valid* (the language's
verifier accepts it), *unique* (distinct / collected), *novel* (not among the samples the
prompts showed), and invalid examples with the verifier's reason and position.

**Being a good client.** Every HTTP attempt counts against ``max_requests``; connection
errors, timeouts, 408/409/429 and 5xx are retried up to ``retries`` times with exponential
backoff (``backoff * 2**k`` seconds, jittered, or the server's ``Retry-After``); any other
4xx is reported and ends that language. The API key comes from the environment variable
named by the caller and is never stored in a report.

>>> report = run_fewshot(FewShotConfig("http://127.0.0.1:8000/v1", "tiny"),
...                      ["markov:order=2"])                      # doctest: +SKIP
>>> report.languages[0].valid                                    # doctest: +SKIP
0.98
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

APIS = ("chat", "completions")
STUDY_RESULTS = "results.json"  # what `scratchllm study` writes in its directory
RETRY_STATUS = (408, 409, 429)  # and every 5xx
_MARKER = re.compile(r"^\s*(?:[-*\u2022]|\d{1,3}[.)])\s+")
_WRAP = ("`", '"', "'")


@dataclass(frozen=True)
class FewShotConfig:
    endpoint: str  # base URL of an OpenAI-compatible API; a bare host gets /v1
    model: str  # the model name the endpoint serves
    api: str = "chat"  # "chat" or "completions"
    api_key_env: str | None = None  # the environment variable holding the key (not the key)
    shots: int = 8  # valid samples shown in each prompt
    n_samples: int = 50  # samples to collect per language
    per_request: int = 10  # chat: how many new samples each request asks for
    temperature: float = 1.0
    max_tokens: int = 400  # per request
    timeout: float = 60.0  # seconds per HTTP attempt
    retries: int = 3  # retries of a failed attempt (timeouts, 429, 5xx)
    backoff: float = 1.0  # seconds before the first retry; doubles each time
    max_requests: int = 100  # HTTP attempts over the whole run, retries included
    seed: int = 0  # the examples shown; request i also sends seed + i

    def __post_init__(self) -> None:
        if self.api not in APIS:
            raise ValueError(f"api must be one of {APIS}, got {self.api!r}")
        for name in ("shots", "n_samples", "per_request", "max_tokens", "max_requests"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.retries < 0 or self.backoff < 0 or self.timeout <= 0:
            raise ValueError("retries and backoff must be >= 0 and timeout > 0")
        if urlsplit(self.endpoint).scheme not in ("http", "https"):
            raise ValueError(f"endpoint {self.endpoint!r} must be an http:// or https:// URL")

    @property
    def base_url(self) -> str:
        parts = urlsplit(self.endpoint)
        return self.endpoint.rstrip("/") + ("/v1" if parts.path in ("", "/") else "")


@dataclass
class LanguageResult:
    language: str  # the spec
    samples: list[str] = field(default_factory=list)  # parsed, END not included
    shown: list[str] = field(default_factory=list)  # the examples the prompts held
    requests: int = 0  # HTTP attempts for this language, retries included
    retries: int = 0
    valid: float | None = None
    unique: float | None = None
    novel: float | None = None
    invalid_examples: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # what went wrong, in order
    stopped: str | None = None  # why fewer than n_samples were collected


@dataclass
class FewShotReport:
    config: FewShotConfig
    languages: list[LanguageResult]
    compared: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # compared[checkpoint][language] = the trained model's valid / unique / novel

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "languages": [asdict(r) for r in self.languages],
            "compared": self.compared,
        }

    def to_markdown(self) -> str:
        c = self.config
        lines = [
            f"# {c.model} on our languages ({c.api} API, {c.shots}-shot)",
            "",
            f"Endpoint `{c.base_url}`, temperature {c.temperature}, {c.n_samples} samples per "
            f"language asked for. valid: accepted by the language's verifier; unique: distinct "
            f"/ collected; novel: not among the examples shown.",
            "",
        ]
        for r in self.languages:
            lines += [f"## `{r.language}`", "", "| source | samples | valid | unique | novel |"]
            lines += ["|---|---|---|---|---|"]
            lines.append(_row(c.model, len(r.samples), r.valid, r.unique, r.novel))
            for name, results in self.compared.items():
                m = results.get(r.language)
                if m:
                    lines.append(_row(name, m["samples"], m["valid"], m["unique"], m["novel"]))
            lines.append("")
            lines.append(f"{r.requests} requests ({r.retries} retries).")
            if r.stopped:
                lines.append(f"Stopped early: {r.stopped}.")
            for e in r.errors:
                lines.append(f"- error: {e}")
            if r.invalid_examples:
                lines += ["", "Invalid samples, with the verifier's reason:", ""]
                lines += [
                    f"- `{e['sample']!r}` at {e['position']}: {e['reason']}"
                    for e in r.invalid_examples
                ]
            lines.append("")
        return "\n".join(lines)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        data = json.dumps(self.to_dict(), indent=1, ensure_ascii=False)
        (directory / "results.json").write_text(data + "\n", encoding="utf-8")
        (directory / "report.md").write_text(self.to_markdown(), encoding="utf-8")
        return directory / "report.md"


def _row(name: str, n: int | None, valid, unique, novel) -> str:  # noqa: ANN001
    n = "-" if n is None else n
    pct = lambda x: "-" if x is None else f"{100 * x:.1f} %"  # noqa: E731
    return f"| {name} | {n} | {pct(valid)} | {pct(unique)} | {pct(novel)} |"


# -- prompts and parsing --------------------------------------------------------------------


def chat_messages(examples: list[str], ask: int) -> list[dict[str, str]]:
    shown = "\n".join(e.rstrip("\n") for e in examples)
    return [
        {
            "role": "user",
            "content": "Here are strings from a formal language, one per line:\n\n"
            f"{shown}\n\nWrite {ask} new strings that follow the same rules, one per line. "
            "Write only the strings: no numbering, no quotes, no explanation.",
        }
    ]


def completion_prompt(examples: list[str]) -> str:
    return "".join(e if e.endswith("\n") else e + "\n" for e in examples)


def parse_samples(text: str, cut_last: bool = False) -> list[str]:
    """The samples in a reply: one per non-empty line, list markers and wrapping removed.

    >>> parse_samples("1. abba\\n- `ab`\\n\\n```\\n\\"ba\\"\\nab", cut_last=True)
    ['abba', 'ab', 'ba']
    """
    lines = text.split("\n")
    if cut_last and lines:
        lines = lines[:-1]  # the reply ended mid-line (max_tokens)
    samples = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("```"):
            continue
        line = _MARKER.sub("", line)
        while len(line) >= 2 and line[0] == line[-1] and line[0] in _WRAP:
            line = line[1:-1]
        if line:
            samples.append(line)
    return samples


# -- talking to the endpoint ----------------------------------------------------------------


class RequestCapReached(Exception):
    pass


class EndpointError(Exception):
    """A request the endpoint refused, or that failed after every retry."""


class Endpoint:
    """One OpenAI-compatible endpoint, with our own retries, backoff and request cap."""

    def __init__(self, config: FewShotConfig, api_key: str | None) -> None:
        try:
            import openai
        except ImportError:
            raise ImportError(
                "prompting an endpoint needs the openai package: pip install openai"
            ) from None
        self.openai = openai
        self.config = config
        self.client = openai.OpenAI(
            base_url=config.base_url,
            api_key=api_key or "unused",  # a local server may need none; the client wants one
            timeout=config.timeout,
            max_retries=0,  # retries are ours: counted, capped and reported
        )
        self.requests = 0  # attempts over the whole run
        self._jitter = random.Random(config.seed)

    def ask(self, examples: list[str], index: int, result: LanguageResult) -> list[str]:
        """One request (with its retries) for new samples; returns them parsed."""
        c = self.config
        kw = dict(
            model=c.model, temperature=c.temperature, max_tokens=c.max_tokens, seed=c.seed + index
        )
        if c.api == "chat":
            messages = chat_messages(examples, c.per_request)
            reply = self._call(
                lambda: self.client.chat.completions.create(messages=messages, **kw), result
            )
            choice = reply.choices[0]
            return parse_samples(choice.message.content or "", choice.finish_reason == "length")
        prompt = completion_prompt(examples)
        reply = self._call(lambda: self.client.completions.create(prompt=prompt, **kw), result)
        choice = reply.choices[0]
        return parse_samples(choice.text, cut_last=choice.finish_reason == "length")

    def _call(self, request, result: LanguageResult):  # noqa: ANN001
        last = None
        for attempt in range(self.config.retries + 1):
            if self.requests >= self.config.max_requests:
                raise RequestCapReached(f"the request cap ({self.config.max_requests}) is reached")
            self.requests += 1
            result.requests += 1
            try:
                return request()
            except (self.openai.APIConnectionError, self.openai.APITimeoutError) as e:
                last, wait = f"{type(e).__name__}: {e}", None
            except self.openai.APIStatusError as e:
                status = e.status_code
                if status not in RETRY_STATUS and status < 500:
                    raise EndpointError(f"HTTP {status}: {_message(e)}") from None
                last, wait = f"HTTP {status}: {_message(e)}", _retry_after(e)
            result.errors.append(f"attempt {attempt + 1}: {last}")
            if attempt < self.config.retries:
                result.retries += 1
                delay = self.config.backoff * 2**attempt * self._jitter.uniform(0.5, 1.0)
                time.sleep(wait if wait is not None else delay)
        raise EndpointError(f"gave up after {self.config.retries + 1} attempts ({last})")


def _message(e: Exception) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return str(e)


def _retry_after(e: Exception) -> float | None:
    response = getattr(e, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None


# -- the run -------------------------------------------------------------------------------


def run_fewshot(
    config: FewShotConfig,
    languages: list[str],
    api_key: str | None = None,
    compare: list[str | Path] = (),
    say=lambda line: None,  # noqa: ANN001
) -> FewShotReport:
    """Prompt the endpoint for each language spec; measure the samples; see the module doc.

    ``compare``: checkpoints whose samples of the same languages go beside the endpoint's,
    or study directories (``scratchllm study --out DIR``), whose finished runs on these
    languages go beside it as they are, without sampling again.
    """
    from scratchllm.data.languages import get

    specs = [get(spec) for spec in languages]  # bad specs fail before any request
    endpoint = Endpoint(config, api_key)
    results = []
    for lang in specs:
        result = LanguageResult(lang.spec)
        rng = random.Random(config.seed)
        index = 0
        try:
            while len(result.samples) < config.n_samples:
                examples = [lang.sample(rng) for _ in range(config.shots)]
                result.shown += examples
                got = endpoint.ask(examples, index, result)
                index += 1
                result.samples += got[: config.n_samples - len(result.samples)]
                say(f"{lang.spec}: {len(result.samples)}/{config.n_samples} samples")
        except RequestCapReached as e:
            result.stopped = str(e)
        except EndpointError as e:
            result.stopped = str(e)
            result.errors.append(str(e))
        measure(lang, result)
        results.append(result)
    report = FewShotReport(config, results)
    for path in compare:
        if (Path(path) / STUDY_RESULTS).is_file():
            report.compared.update(_studied(Path(path), specs))
        else:
            report.compared[str(path)] = _trained(path, specs, config)
    return report


def measure(lang: Any, result: LanguageResult, n_examples: int = 5) -> None:
    """Fill in valid / unique / novel and the invalid examples from ``result.samples``."""
    samples = result.samples
    if not samples:
        return
    verdicts = [lang.verify(s + lang.END) for s in samples]
    seen = {s.rstrip(lang.END) for s in result.shown}
    result.valid = sum(v.valid for v in verdicts) / len(samples)
    result.unique = len(set(samples)) / len(samples)
    result.novel = sum(s not in seen for s in samples) / len(samples)
    result.invalid_examples = [
        {"sample": s, "position": v.position, "reason": v.reason}
        for s, v in zip(samples, verdicts)
        if not v.valid
    ][:n_examples]


def _studied(study_dir: Path, specs: list[Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """A study's rows on these languages, one entry per model (``DIR: model``); the study
    writes percentages, the report here fractions. Failed runs are left out."""
    from scratchllm.data.languages import get

    wanted = {lang.spec for lang in specs}
    try:
        rows = json.loads((study_dir / STUDY_RESULTS).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{study_dir / STUDY_RESULTS}: not a study's results ({e})") from e
    if not isinstance(rows, list):
        raise ValueError(f"{study_dir / STUDY_RESULTS}: not a study's results (not a list)")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        spec = get(row["language"]).spec
        if spec not in wanted or row.get("error"):
            continue
        entry = {"samples": row.get("samples")}
        for key in ("valid", "unique", "novel"):
            entry[key] = None if row.get(key) is None else row[key] / 100
        out.setdefault(f"{study_dir}: {row['model']}", {})[spec] = entry
    return out


def _trained(ckpt: str | Path, specs: list[Any], config: FewShotConfig) -> dict[str, Any]:
    """A trained checkpoint's valid / unique on the same languages (novel: not defined here:
    it saw no prompt examples)."""
    from scratchllm.checkpoint import load_checkpoint
    from scratchllm.evaluation.validity import evaluate_language

    loaded = load_checkpoint(ckpt)
    out = {}
    for lang in specs:
        r = evaluate_language(
            loaded.model,
            loaded.tokenizer,
            lang,
            n_samples=config.n_samples,
            temperature=config.temperature,
            seed=config.seed,
        )
        out[lang.spec] = {
            "samples": r.n_samples,
            "valid": r.valid,
            "unique": r.unique,
            "novel": r.novel,
        }
    return out
