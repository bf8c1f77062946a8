"""Serving speed: `scratchllm serve` under 1 and 8 concurrent clients, beside the library alone.

A 4 x 4 x 128 GPT (random weights, vocabulary 65, block 256; or --size, or --checkpoint) is
served by `scratchllm serve` in its own process; this process plays the clients, each a
thread streaming ``/v1/completions`` on one raw HTTP connection that it keeps alive, as the
openai client does (greedy, ``max_tokens`` new tokens, a different 16-character prompt per
request). For each client count it reports

* requests/s and tokens/s over the whole run (wall clock, every request done),
* time to first token: from sending the request to the first streamed token (median, p90),

and the peer: the same generations run by ``stream_generate`` in this process, one after
another, with no HTTP (what the model alone can do). ``vs library`` is the share of the
model's speed that reaches clients: the median over rounds of the ratio within a round.
A last row serves with ``--stream-interval 0`` (one write per token) to show what the
50 ms default buys.

    python benchmarks/bench_serve.py                       # 1 and 8 clients, 32 requests
    python benchmarks/bench_serve.py --clients 1 2 8 --requests 64 --max-tokens 128
    python benchmarks/bench_serve.py --size 6 6 384 --clients 1 8 --requests 16
    python benchmarks/bench_serve.py --checkpoint runs/demo --screenshot docs/images/playground.png

``--screenshot PNG`` also opens the playground in Debian's chromium (as the browser test
does), generates from --prompt, hovers a token and saves the page.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

THREADS = 1  # torch threads for the library row; the server runs on its defaults
PROMPTS = [f"{w} the {x} of" for w in ("Return", "Make", "Find", "Keep") for x in "abcd"]


def build_checkpoint(directory: Path, n_layer: int, n_head: int, n_embd: int) -> Path:
    import torch

    from scratchllm.checkpoint import save_checkpoint
    from scratchllm.models import GPT, GPTConfig
    from scratchllm.tokenizers import CharTokenizer

    torch.manual_seed(0)
    tok = CharTokenizer.train(string.ascii_letters + string.digits + " .\n")  # 65 characters
    config = GPTConfig(
        vocab_size=tok.vocab_size, block_size=256, n_layer=n_layer, n_head=n_head, n_embd=n_embd
    )
    save_checkpoint(directory, GPT(config).eval(), tok)
    return directory


def library_speed(checkpoint: Path, requests: int, max_tokens: int) -> dict[str, float]:
    """The same work with no server: stream_generate, one request after another."""
    import torch

    from scratchllm.checkpoint import load_checkpoint
    from scratchllm.generation import stream_generate

    torch.set_num_threads(THREADS)
    ckpt = load_checkpoint(checkpoint)
    firsts, tokens = [], 0
    list(stream_generate(ckpt.model, ckpt.tokenizer.encode(PROMPTS[0]), 8, temperature=0))
    t0 = time.perf_counter()
    for i in range(requests):
        start = time.perf_counter()
        for k, _ in enumerate(
            stream_generate(
                ckpt.model,
                ckpt.tokenizer.encode(PROMPTS[i % len(PROMPTS)]),
                max_tokens,
                temperature=0,
            )
        ):
            if k == 0:
                firsts.append(time.perf_counter() - start)
            tokens += 1
    wall = time.perf_counter() - t0
    return {
        "requests_s": requests / wall,
        "tokens_s": tokens / wall,
        "ttft_ms": 1000 * statistics.median(firsts),
        "ttft_p90_ms": 1000 * _p90(firsts),
    }


class ServeProcess:
    """`scratchllm serve CKPT --port 0` in a child process; ``url`` once it listens."""

    def __init__(self, checkpoint: Path, extra: list[str]) -> None:
        cmd = [
            sys.executable,
            "-m",
            "scratchllm",
            "serve",
            str(checkpoint),
            "--port",
            "0",
            "--model-name",
            "bench",
            "--max-queue",
            "64",
            *extra,
        ]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        match = re.search(r"on (http://[\d.]+:\d+)", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"the server did not start: {line}{self.proc.stderr.read()}")
        self.url = match.group(1)
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # drain it

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def one_request(
    conn: http.client.HTTPConnection, prompt: str, max_tokens: int
) -> tuple[float, int]:
    """Stream one completion on ``conn`` (kept alive, as the openai client keeps its
    connection); ``(seconds to the first token, completion tokens)``."""
    body = json.dumps(
        {
            "model": "bench",
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    start = time.perf_counter()
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    first, tokens = None, 0
    for line in response:
        if not line.startswith(b"data: {"):
            continue
        chunk = json.loads(line[6:])
        if first is None and chunk["choices"] and chunk["choices"][0]["text"]:
            first = time.perf_counter() - start
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
    return first if first is not None else float("nan"), tokens


def served_speed(url: str, clients: int, requests: int, max_tokens: int) -> dict[str, float]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    results: list[tuple[float, int]] = []
    lock = threading.Lock()
    conns = [http.client.HTTPConnection(host, int(port), timeout=120) for _ in range(clients)]

    def client(c: int) -> None:
        for i in range(c, requests, clients):
            r = one_request(conns[c], PROMPTS[i % len(PROMPTS)], max_tokens)
            with lock:
                results.append(r)

    for conn in conns:  # warm-up, and each client's connection opened
        one_request(conn, PROMPTS[0], 8)
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for conn in conns:
        conn.close()
    firsts = [f for f, _ in results]
    return {
        "requests_s": len(results) / wall,
        "tokens_s": sum(n for _, n in results) / wall,
        "ttft_ms": 1000 * statistics.median(firsts),
        "ttft_p90_ms": 1000 * _p90(firsts),
    }


def _p90(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(0.9 * len(values)))]


def screenshot(url: str, png: Path, prompt: str) -> None:
    """The playground after one generation, a token hovered (Debian's chromium)."""
    from playwright.sync_api import sync_playwright

    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path="/usr/bin/chromium",
            args=flags,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        page = context.new_page()
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('model-info').textContent.length > 20")
        page.fill("#prompt", prompt)
        page.fill("#seed", "1")
        page.fill("#max-tokens", "160")
        page.click("#generate")
        page.wait_for_selector("#finish-reason", timeout=60_000)
        page.wait_for_selector("#attention[data-drawn]", timeout=60_000)
        tokens = page.query_selector_all("#output .tok")
        tokens[min(12, len(tokens) - 1)].hover()
        page.wait_for_selector("#tooltip:not([hidden])")
        png.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(png), full_page=True)
        context.close()
    print(f"screenshot: {png}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="serve this checkpoint (default: a random 4x4x128 GPT)",
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs=3,
        default=[4, 4, 128],
        metavar=("LAYERS", "HEADS", "WIDTH"),
        help="the random GPT's shape (default 4 4 128); e.g. 6 6 384 for one of 42 MB",
    )
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests", type=int, default=32, help="requests per client count")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians)")
    parser.add_argument("--screenshot", type=Path, default=None, metavar="PNG")
    parser.add_argument("--prompt", default="Return the", help="the screenshot's prompt")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or build_checkpoint(Path(tmp) / "bench", *args.size)
        server = ServeProcess(ckpt, [])
        eager = ServeProcess(ckpt, ["--stream-interval", "0"])  # a write for every token
        names = ["library, no HTTP"] + [f"served, {c} client{'s' * (c > 1)}" for c in args.clients]
        names.append("served, 1 client, every token written")
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        try:
            n, t = args.requests, args.max_tokens
            steps = [(names[0], lambda: library_speed(ckpt, n, t))]
            for name, c in zip(names[1:], args.clients):
                steps.append((name, lambda c=c: served_speed(server.url, c, n, t)))
            steps.append((names[-1], lambda: served_speed(eager.url, 1, n, t)))
            for k in range(args.rounds):  # alternate, and reverse every other round: a
                for name, step in steps[:: 1 if k % 2 == 0 else -1]:  # drift or an order
                    runs[name].append(step())  # effect then hits every row alike
            if args.screenshot:
                screenshot(server.url, args.screenshot, args.prompt)
        finally:
            server.close()
            eager.close()
    rows = []
    for name in names:
        row = {k: statistics.median(r[k] for r in runs[name]) for k in runs[name][0]}
        # paired: this row's tokens/s over the library's in the same round, then the median
        row["ratio"] = statistics.median(
            r["tokens_s"] / lib["tokens_s"] for r, lib in zip(runs[name], runs[names[0]])
        )
        rows.append((name, row))
    print(
        f"\n{args.requests} requests x {args.max_tokens} tokens, greedy, streamed; medians of "
        f"{args.rounds} alternating rounds; the library on {THREADS} torch thread, the server on "
        "its defaults"
    )
    print(
        f"{'':38} {'requests/s':>11} {'tokens/s':>9} {'TTFT ms':>8} {'p90':>6} {'vs library':>11}"
    )
    for name, r in rows:
        print(
            f"{name:38} {r['requests_s']:11.2f} {r['tokens_s']:9.0f} {r['ttft_ms']:8.1f} "
            f"{r['ttft_p90_ms']:6.1f} {r['ratio']:10.2f}x"
        )


if __name__ == "__main__":
    main()
