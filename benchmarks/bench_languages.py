"""Synthetic languages: sampling, verifying and true-distribution throughput.

For each family (default spec) it times, on the same samples:

- ``sample``: samples per second from ``random.Random``;
- ``verify``: characters per second through ``Language.verify``;
- ``next_distribution``: positions per second (one call per prefix of each sample).

Where a language is regular (sticky, copy) it also times the peer a user would reach for, a
compiled ``re.fullmatch`` over the same strings (valid samples and the same samples with one
symbol changed), checks that both give the same verdicts, and prints the ratio ours / regex.
Blocks alternate between ours and the peer so a busy machine slows both alike; figures are
medians over blocks.

    python benchmarks/bench_languages.py [--samples 2000] [--blocks 5]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import time

from scratchllm.data.languages import get

SPECS = ["sticky", "markov", "counting", "addition", "dyck", "copy"]
PEER_REGEX = {
    "sticky": r"(?:[a-c]{3,}|[A-C]{3,}|[0-2]{3,})+\n",  # k=2, 3 classes of 3 symbols
    "copy": r"([a-d]{8})\|\1\n",  # length 8 over abcd
}


def _median_rate(fn, amount: int, blocks: int) -> float:
    times = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return amount / statistics.median(times)


def _corrupt(samples: list[str], alphabet: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for s in samples:
        i = rng.randrange(len(s) - 1)
        out.append(s[:i] + rng.choice(alphabet) + s[i + 1 :])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--samples", type=int, default=2000, help="samples per family")
    ap.add_argument("--blocks", type=int, default=5, help="timed repetitions (median)")
    args = ap.parse_args()

    print(f"{'language':<10} {'sample/s':>10} {'verify chars/s':>15} {'next_dist pos/s':>16}")
    peers = []
    for name in SPECS:
        lang = get(name)
        samples = lang.samples(args.samples, seed=0)
        texts = samples + _corrupt(samples, lang.alphabet, seed=1)
        chars = sum(map(len, texts))
        positions = sum(map(len, samples[:200]))

        sample_rate = _median_rate(
            lambda lang=lang: lang.samples(args.samples), args.samples, args.blocks
        )

        def ours(lang=lang, texts=texts):
            return [lang.verify(t).valid for t in texts]

        def dists(lang=lang, samples=samples[:200]):
            for s in samples:
                for i in range(len(s)):
                    lang.next_distribution(s[:i])

        verify_rate = _median_rate(ours, chars, args.blocks)
        dist_rate = _median_rate(dists, positions, max(1, args.blocks // 2))
        print(f"{name:<10} {sample_rate:>10,.0f} {verify_rate:>15,.0f} {dist_rate:>16,.0f}")

        if name in PEER_REGEX:
            pattern = re.compile(PEER_REGEX[name])

            def peer(pattern=pattern, texts=texts):
                return [pattern.fullmatch(t) is not None for t in texts]

            assert ours() == peer(), f"{name}: our verdicts differ from the regex"
            ours_times, peer_times = [], []
            for _ in range(args.blocks):  # alternate, so load affects both alike
                for fn, bucket in ((ours, ours_times), (peer, peer_times)):
                    t0 = time.perf_counter()
                    fn()
                    bucket.append(time.perf_counter() - t0)
            o, p = statistics.median(ours_times), statistics.median(peer_times)
            peers.append((name, len(texts), chars / o, chars / p, o / p))

    if peers:
        print()
        print("verify vs a compiled regex (same strings, same verdicts; half are corrupted)")
        head = f"{'ours chars/s':>14} {'re chars/s':>14} {'ours/re time':>13}"
        print(f"{'language':<10} {'strings':>8} {head}")
        for name, n, ours_rate, peer_rate, ratio in peers:
            print(f"{name:<10} {n:>8} {ours_rate:>14,.0f} {peer_rate:>14,.0f} {ratio:>12.1f}x")


if __name__ == "__main__":
    main()
