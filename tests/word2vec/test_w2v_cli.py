"""`scratchllm word2vec train | similar | analogy` on real files, through the CLI's main."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gensim.models import KeyedVectors, Word2Vec

from scratchllm.cli import main
from scratchllm.word2vec import LineCorpus, Word2VecConfig

LINES = [
    "The King and the Queen rule the kingdom; the king is a man, the queen a woman.",
    "A man and a woman walk. The man is a king's friend, the woman a queen's friend!",
]


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(LINES[i] for i in rng.integers(0, 2, 200)) + "\n", encoding="utf-8")
    return path


def run(capsys, *args):
    code = main(["word2vec", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_writes_a_directory_gensim_reads(tmp_path, corpus, capsys):
    out = tmp_path / "vecs"
    code, text, _ = run(
        capsys, "train", "--data", corpus, "--out", out, "--vector-size", 12, "--sg", 1,
        "--min-count", 2, "--epochs", 3, "--window", 3, "--negative", 4, "--sample", 0,
        "--seed", 7, "--alpha", 0.03, "--min-alpha", 0.001, "--max-vocab", 15, "--quiet",
    )  # fmt: skip
    assert code == 0
    kv = KeyedVectors.load_word2vec_format(str(out / "vectors.txt"), fvocab=str(out / "vocab.txt"))
    # at most 15 words, the cut never splitting a tie: gensim's max_final_vocab, word for word
    theirs = Word2Vec(min_count=2, max_final_vocab=15)
    theirs.build_vocab(LineCorpus(corpus))
    assert kv.index_to_key == theirs.wv.index_to_key and 5 < len(kv) <= 15
    assert f"vocabulary: {len(kv)} words seen >= {theirs.effective_min_count} times" in text
    assert "skip-gram, 3 epochs" in text and kv.vectors.shape[1] == 12
    assert "King" not in kv and "king" in kv  # lowercased, punctuation gone
    meta = json.loads((out / "word2vec.json").read_text())
    expected = Word2VecConfig(
        vector_size=12, sg=1, min_count=2, epochs=3, window=3, negative=4, sample=0, seed=7,
        alpha=0.03, min_alpha=0.001, max_final_vocab=15,
    )  # fmt: skip
    assert meta["config"] == expected.to_dict()  # every flag reached the config
    assert meta["data"] == str(corpus) and len(meta["loss_per_epoch"]) == 3


def test_similar_and_analogy_print_ranked_words(tmp_path, corpus, capsys):
    out = tmp_path / "vecs"
    assert run(capsys, "train", "--data", corpus, "--out", out, "--min-count", 1, "--quiet")[0] == 0
    code, text, _ = run(capsys, "similar", out, "KING", "--topn", 3)  # the query is lowercased
    assert code == 0
    rows = [line.split() for line in text.splitlines()]
    assert len(rows) == 3 and all(len(r) == 2 for r in rows) and "king" not in text
    cosines = [float(r[1]) for r in rows]
    assert cosines == sorted(cosines, reverse=True)
    code, text, _ = run(capsys, "analogy", out, "man", "king", "woman", "--topn", 2)
    assert code == 0 and text.startswith("man is to king as woman is to:")
    assert len(text.splitlines()) == 3


def test_unknown_word_and_bad_input_are_one_line_errors(tmp_path, corpus, capsys):
    out = tmp_path / "vecs"
    run(capsys, "train", "--data", corpus, "--out", out, "--min-count", 1, "--quiet")
    code, _, err = run(capsys, "similar", out, "kingg")
    assert code == 2 and "'kingg' is not in the vocabulary" in err and "king" in err
    code, _, err = run(capsys, "analogy", out, "man", "king", "zzz")
    assert code == 2 and "'zzz' is not in the vocabulary" in err
    code, _, err = run(capsys, "train", "--data", tmp_path / "missing.txt", "--out", out)
    assert code == 2 and "does not exist" in err
    code, _, err = run(capsys, "train", "--data", corpus, "--out", out, "--window", 0)
    assert code == 2 and "window must be an integer >= 1" in err
    code, _, err = run(capsys, "similar", tmp_path, "king")
    assert code == 2 and "not a directory made by" in err
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf\xe9 ok\n")
    code, _, err = run(capsys, "train", "--data", bad, "--out", out, "--min-count", 1)
    assert code == 2 and "line 1: not UTF-8" in err


def test_help_shows_gensims_names_and_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        main(["word2vec", "train", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in (
        "--vector-size VECTOR_SIZE dimensions (default: 100)",
        "--window WINDOW largest neighbour distance (default: 5)",
        "--min-count MIN_COUNT drop rarer words (default: 5)",
        "--negative NEGATIVE noise words per example (default: 5)",
        "(default: 0.001)",
        "--epochs EPOCHS passes over the corpus (default: 5)",
        "--sg {0,1} 1 skip-gram, 0 CBOW (default: 0)",
        "--seed SEED random seed (default: 1)",
        "initial learning rate (default: 0.025)",
        "final learning rate (default: 0.0001)",
        "--max-final-vocab N, --max-vocab N",
        "--cbow-mean {0,1}",
    ):
        assert shown in text
