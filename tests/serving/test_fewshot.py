"""`scratchllm fewshot` against our own `serve` over real HTTP: a trigram served as a base
model continues few-shot prompts of markov:order=2 validly; retries, backoff, the request
cap and timeouts behave; the key comes from the environment and is never written."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest
from serving_util import ASSISTANT, END, USER, RoleTemplate, health
from test_concurrency import LONG, leave, open_stream, wait_until

from scratchllm.checkpoint import save_checkpoint
from scratchllm.cli import main
from scratchllm.data.corpus import text_from_spec
from scratchllm.data.languages import get
from scratchllm.models.ngram import NGram, NGramConfig
from scratchllm.serving import Server, ServerConfig
from scratchllm.serving.engine import Engine
from scratchllm.serving.fewshot import (
    FewShotConfig,
    chat_messages,
    completion_prompt,
    parse_samples,
    run_fewshot,
)
from scratchllm.tokenizers import CharTokenizer

LANGUAGE = "markov:order=2,length=8"


@pytest.fixture(scope="module")
def trigram(tmp_path_factory):
    """A counting trigram (no smoothing) fitted on the language: n = context_needed, so
    nearly everything it writes is valid (docs/study.md)."""
    text = text_from_spec(LANGUAGE, n_samples=3000, seed=1).text
    tok = CharTokenizer.train(text + USER + ASSISTANT + END, unk=True)  # chat prompts: English
    model = NGram(NGramConfig(n=3, vocab_size=tok.vocab_size, smoothing=0.0)).fit(tok.encode(text))
    path = tmp_path_factory.mktemp("fewshot") / "trigram"
    save_checkpoint(path, model, tok)
    return path, model, tok


def start(trigram, chat=False, **config):
    _, model, tok = trigram
    template = RoleTemplate(tok) if chat else None
    return Server(Engine(model, tok, "trigram", ServerConfig(port=0, **config), template))


def test_a_served_base_model_continues_the_samples(trigram):
    path, _, _ = trigram
    with start(trigram) as server:
        config = FewShotConfig(
            server.url,
            "trigram",
            api="completions",
            shots=5,
            n_samples=40,
            max_tokens=120,
            backoff=0.05,
        )
        report = run_fewshot(config, [LANGUAGE], compare=[path])
    (r,) = report.languages
    assert len(r.samples) == 40 and not r.errors and r.stopped is None
    assert r.requests == r.requests - r.retries >= 1
    lang = get(LANGUAGE)
    valid = [lang.verify(s + "\n").valid for s in r.samples]
    assert r.valid == sum(valid) / 40 and r.valid >= 0.95
    assert r.unique == len(set(r.samples)) / 40 and r.unique > 0.5
    assert r.novel == sum(s + "\n" not in r.shown for s in r.samples) / 40
    assert all(not e["sample"] or e["reason"] != "valid" for e in r.invalid_examples)
    trained = report.compared[str(path)][lang.spec]
    assert trained["samples"] == 40 and trained["valid"] >= 0.95
    text = report.to_markdown()
    assert "| trigram | 40 |" in text and str(path) in text


def test_a_study_directory_goes_beside_the_endpoint_as_it_is(trigram, tmp_path):
    """--compare STUDY_DIR: the study's finished runs on the same languages (its
    percentages as fractions), one row per model; other languages are left out."""
    from scratchllm.study import StudyConfig, run_study

    study = tmp_path / "study"
    languages = [LANGUAGE, "sticky:k=1"]
    run_study(StudyConfig(languages, ["bigram"], "tiny", study, jobs=1, progress=False))
    with start(trigram) as server:
        config = FewShotConfig(server.url, "trigram", api="completions", shots=5)
        config = dataclasses.replace(config, n_samples=10, max_tokens=120, backoff=0.05)
        report = run_fewshot(config, [LANGUAGE], compare=[study])
    spec = get(LANGUAGE).spec
    (row,) = [
        r for r in json.loads((study / "results.json").read_text()) if r["language"] == LANGUAGE
    ]
    assert list(report.compared) == [f"{study}: bigram"]
    got = report.compared[f"{study}: bigram"]
    assert list(got) == [spec]  # sticky:k=1 was not asked for
    assert got[spec]["valid"] == pytest.approx(row["valid"] / 100)
    assert got[spec]["samples"] == row["samples"] > 0
    assert f"| {study}: bigram | {row['samples']} | {row['valid']:.1f} %" in report.to_markdown()


def test_a_file_that_is_not_a_study_is_named(tmp_path):
    (tmp_path / "results.json").write_text('{"not": "rows"}')
    config = FewShotConfig("http://127.0.0.1:9", "m")
    with pytest.raises(ValueError, match="not a study's results"):
        run_fewshot(dataclasses.replace(config, max_requests=1, retries=0), [], compare=[tmp_path])


def test_the_chat_api_and_the_report_files(trigram, tmp_path, capsys):
    with start(trigram, chat=True) as server:
        out = tmp_path / "report"
        code = main(
            [
                "fewshot",
                "--endpoint",
                server.url,
                "--endpoint-model",
                "trigram",
                "--languages",
                LANGUAGE,
                "dyck",
                "--samples",
                "6",
                "--max-tokens",
                "60",
                "--out",
                str(out),
            ]
        )
    assert code == 0
    assert (out / "report.md").is_file() and (out / "results.json").is_file()
    import json

    results = json.loads((out / "results.json").read_text())
    assert [r["language"] for r in results["languages"]] == [get(LANGUAGE).spec, get("dyck").spec]
    for r in results["languages"]:
        assert r["requests"] >= 1 and not r["errors"]
        for e in r["invalid_examples"]:  # the model was never shown chat: reasons say why
            assert e["reason"] and e["reason"] != "valid"
    assert "report:" in capsys.readouterr().out


def test_retries_with_backoff_until_the_server_is_free(trigram):
    with start(trigram, max_queue=0, max_total_tokens=10**6) as server:
        busy, _ = open_stream(
            server, {"model": "trigram", "prompt": "a", "max_tokens": LONG, "stream": True}
        )
        wait_until(lambda: health(server)["queue"]["running"], 5)
        threading.Timer(0.6, leave, args=(busy,)).start()
        config = FewShotConfig(
            server.url,
            "trigram",
            api="completions",
            n_samples=5,
            max_tokens=60,
            retries=6,
            backoff=0.2,
        )
        t0 = time.perf_counter()
        (r,) = run_fewshot(config, [LANGUAGE]).languages
    assert len(r.samples) == 5 and r.stopped is None
    assert r.retries >= 1 and r.errors[0].startswith("attempt 1: HTTP 503")
    assert time.perf_counter() - t0 >= 0.1  # it waited between attempts


def test_the_request_cap_and_refusals(trigram):
    with start(trigram) as server:
        capped = FewShotConfig(
            server.url,
            "trigram",
            api="completions",
            n_samples=10_000,
            max_tokens=20,
            max_requests=3,
        )
        report = run_fewshot(capped, [LANGUAGE, "dyck"])
        first, second = report.languages
        assert first.requests == 3 and "request cap (3)" in first.stopped
        assert second.requests == 0 and "request cap" in second.stopped
        wrong = FewShotConfig(server.url, "gpt-4", api="completions", retries=5)
        (r,) = run_fewshot(wrong, [LANGUAGE]).languages
        assert r.requests == 1, "a 404 is not retried"
        assert "HTTP 404" in r.stopped and r.samples == []


def test_a_slow_endpoint_times_out_and_gives_up(trigram):
    with start(trigram, max_queue=1, max_total_tokens=10**6) as server:
        busy, _ = open_stream(
            server, {"model": "trigram", "prompt": "a", "max_tokens": LONG, "stream": True}
        )
        wait_until(lambda: health(server)["queue"]["running"], 5)
        config = FewShotConfig(
            server.url, "trigram", api="completions", timeout=0.3, retries=1, backoff=0.05
        )
        (r,) = run_fewshot(config, [LANGUAGE]).languages
        leave(busy)
    assert r.requests == 2 and "gave up after 2 attempts" in r.stopped
    assert "APITimeoutError" in r.errors[0]


def test_the_key_comes_from_the_environment_and_is_never_written(trigram, tmp_path, monkeypatch):
    secret = "sk-test-0123456789-secret"
    with start(trigram, api_key=secret) as server:
        out = tmp_path / "r"
        args = [
            "fewshot",
            "--endpoint",
            server.url,
            "--endpoint-model",
            "trigram",
            "--api",
            "completions",
            "--languages",
            LANGUAGE,
            "--samples",
            "3",
            "--out",
            str(out),
            "--api-key-env",
            "SCRATCHLLM_TEST_KEY",
        ]
        assert main(args) == 2  # not set yet: a clear error
        monkeypatch.setenv("SCRATCHLLM_TEST_KEY", secret)
        assert main(args) == 0
    written = (out / "report.md").read_text() + (out / "results.json").read_text()
    assert secret not in written and "SCRATCHLLM_TEST_KEY" in written
    assert '"samples": [' in (out / "results.json").read_text()


def test_prompts_and_parsing():
    examples = ["abab\n", "ba\n"]
    assert completion_prompt(examples) == "abab\nba\n"
    (message,) = chat_messages(examples, 4)
    assert "abab\nba\n" in message["content"] and "Write 4 new strings" in message["content"]
    reply = "Here you go:\n1. aabb\n2) `ab`\n- \"ba\"\n* 'b'\n```\nabab\n```\n\n"
    assert parse_samples(reply) == ["Here you go:", "aabb", "ab", "ba", "b", "abab"]
    assert parse_samples("ab\nba\nabb", cut_last=True) == ["ab", "ba"]
    assert parse_samples("") == []
