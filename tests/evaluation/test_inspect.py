"""scratchllm.evaluation.inspect: the numbers behind every plot, checked against independent
computations (numpy / torch PCA, torch's LSTM, Counter-made n-gram tables, hand-set attention)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.data.languages import END, get
from scratchllm.evaluation.inspect import (
    chance_scores,
    default_text,
    find_language,
    format_offset_table,
    inspect_model,
    lookback_offsets,
    ngram_table,
    offset_scores,
    pca_2d,
    prepare_text,
    token_embeddings,
)
from scratchllm.evaluation.inspect_attention import attention_maps
from scratchllm.evaluation.inspect_embeddings import embedding_plot
from scratchllm.evaluation.inspect_ngram import rule_allowed
from scratchllm.evaluation.inspect_rnn import rnn_activity
from scratchllm.models import GPT, MLPLM, RNNLM, GPTConfig, MLPConfig, NGram, NGramConfig, RNNConfig
from scratchllm.models.base import LanguageModel
from scratchllm.tokenizers import CharTokenizer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def char_tok(language) -> CharTokenizer:
    return CharTokenizer.train(language.alphabet)


def is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000


# -- PCA ------------------------------------------------------------------------------------


def _sign_fixed(a: np.ndarray) -> np.ndarray:
    """Flip each column so its largest-magnitude entry is positive (PCA signs are arbitrary)."""
    far = np.abs(a).argmax(axis=0)
    return a * np.where(a[far, np.arange(a.shape[1])] < 0, -1.0, 1.0)


@pytest.mark.parametrize("seed, n", [(0, 30), (1, 12), (2, 6)])  # tall (Gram path) and SVD
def test_pca_matches_torch_pca_lowrank_and_covariance_eigenvectors(seed, n):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)) * np.array([5, 3, 1, 1, 0.5, 0.5, 0.2, 0.1])  # clear spectrum
    x = x @ np.linalg.qr(rng.normal(size=(8, 8)))[0]  # rotate so axes are not the answer
    pca = pca_2d(x)

    xt = torch.tensor(x, dtype=torch.float64)
    torch.manual_seed(seed)
    _, s, v = torch.pca_lowrank(xt, q=min(n, 8), center=True, niter=6)
    torch_coords = ((xt - xt.mean(0)) @ v[:, :2]).numpy()
    np.testing.assert_allclose(_sign_fixed(pca.coords), _sign_fixed(torch_coords), atol=1e-8)
    var = (s**2).numpy()
    np.testing.assert_allclose(pca.explained, var[:2] / var.sum(), rtol=1e-8)

    evals, evecs = np.linalg.eigh(np.cov(x, rowvar=False))  # ascending
    top = evecs[:, ::-1][:, :2]
    np.testing.assert_allclose(np.abs(pca.components @ top), np.eye(2), atol=1e-8)
    np.testing.assert_allclose(pca.coords.var(axis=0, ddof=1), evals[::-1][:2], rtol=1e-8)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(1, 6),
    st.integers(0, 2**31 - 1),
)
def test_pca_properties_on_any_shape(n, c, seed):
    x = np.random.default_rng(seed).normal(size=(n, c))
    pca = pca_2d(x)
    assert pca.coords.shape == (n, 2) and pca.components.shape == (2, c)
    np.testing.assert_allclose(pca.coords.mean(axis=0), 0.0, atol=1e-9)  # centred
    np.testing.assert_allclose(pca.coords, (x - x.mean(0)) @ pca.components.T, atol=1e-9)
    # The first component carries at least as much variance as the second.
    assert pca.coords[:, 0].var() >= pca.coords[:, 1].var() - 1e-12
    assert 0.0 <= pca.explained.sum() <= 1.0 + 1e-9
    # Signs are fixed: the farthest point along each used component is positive.
    for j in range(2):
        col = pca.coords[:, j]
        if np.abs(col).max() > 1e-12:
            assert col[np.abs(col).argmax()] > 0


def test_pca_rejects_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        pca_2d(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        pca_2d(np.zeros(5))


def test_pca_of_class_separated_embeddings_separates_the_classes():
    lang = get("sticky:k=1,classes=3,size=3")
    tok = char_tok(lang)
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=16, block_size=8, vocab_size=tok.vocab_size))
    rng = np.random.default_rng(0)
    centres = {c: rng.normal(size=16) * 3.0 for c in ("end", "lower", "upper", "digit")}
    rows = [centres[lang.char_class(ch)] + 0.05 * rng.normal(size=16) for ch in tok.chars]
    with torch.no_grad():
        model.transformer.wte.weight.copy_(torch.tensor(np.array(rows)))
    plot = embedding_plot(model, tok, lang)
    assert plot.classes == [lang.char_class(ch) for ch in tok.chars]
    xy = plot.pca.coords
    labels = np.array(plot.classes)
    means = {c: xy[labels == c].mean(axis=0) for c in set(plot.classes)}
    for i, c in enumerate(labels):  # every point is nearest its own class's centre
        nearest = min(means, key=lambda k: np.linalg.norm(xy[i] - means[k]))
        assert nearest == c
    spread = max(np.linalg.norm(xy[labels == c] - means[c], axis=1).max() for c in means)
    gaps = [np.linalg.norm(means[a] - means[b]) for a in means for b in means if a < b]
    # Three class centres in 2-D: the lower/upper/digit clusters are far apart vs their spread.
    assert sorted(gaps)[1] > 10 * spread


def test_token_embeddings_per_family_and_mlp_start_row_left_out():
    V = 7
    mlp = MLPLM(MLPConfig(n=3, vocab_size=V, n_embd=4, n_hidden=8))
    emb = token_embeddings(mlp)
    assert emb.shape == (V, 4)  # the start row (id V) is not a token
    np.testing.assert_array_equal(emb, mlp.wte.weight.detach()[:V].double().numpy())
    rnn = RNNLM(RNNConfig(cell="gru", vocab_size=V, n_embd=5, n_hidden=6, n_layer=1))
    np.testing.assert_array_equal(token_embeddings(rnn), rnn.wte.weight.detach().double().numpy())
    with pytest.raises(ValueError, match="no token embeddings"):
        token_embeddings(NGram(NGramConfig(n=2, vocab_size=V)))


# -- attention ------------------------------------------------------------------------------


def forced_gpt(T: int = 12, strength: float = 20.0) -> GPT:
    """One layer, two heads, wired by hand: head 0 attends to the previous position
    (offset 1), head 1 to its own position (offset 0).

    Token embeddings are zero, so the residual stream is the position embedding
    ``p_i = e_{2i} - e_{2i+1}``: mean zero, so LayerNorm only rescales it. Keys put
    position j on axis j of the head; head 0's query of position i points at axis i - 1,
    head 1's at axis i.
    """
    C, hd = 32, 16
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=C, block_size=T, vocab_size=5))
    attn = model.transformer.h[0].attn
    with torch.no_grad():
        model.transformer.wte.weight.zero_()
        wpe = torch.zeros(T, C)
        for i in range(T):
            wpe[i, 2 * i], wpe[i, 2 * i + 1] = 1.0, -1.0
        model.transformer.wpe.weight.copy_(wpe)
        w = torch.zeros(3 * C, C)
        for head, shift in ((0, 1), (1, 0)):
            for i in range(T):
                # key of position i on axis i (k rows: C + head * hd + axis)
                w[C + head * hd + i, 2 * i], w[C + head * hd + i, 2 * i + 1] = 1.0, -1.0
                if i - shift >= 0:  # query of position i on the axis of key i - shift
                    q = head * hd + i - shift
                    w[q, 2 * i], w[q, 2 * i + 1] = strength, -strength
        attn.c_attn.weight.copy_(w)
        attn.c_attn.bias.zero_()
    return model


def test_forced_heads_score_one_at_their_offsets():
    T = 12
    model = forced_gpt(T)
    maps = attention_maps(model, [1, 2, 3, 4] * 3, list("abcd") * 3, offsets=(0, 1, 2))
    assert maps.weights.shape == (1, 2, T, T)
    np.testing.assert_allclose(maps.weights.sum(-1), 1.0, atol=1e-9)  # rows are distributions
    assert np.all(np.triu(maps.weights, 1) == 0)  # causal
    # head 0 attends one back everywhere it can: score 1 at offset 1
    assert maps.scores[0, 0, 1] > 0.999 and maps.scores[0, 0, 2] < 1e-3
    # head 1 attends to itself
    assert maps.scores[0, 1, 0] > 0.999 and maps.scores[0, 1, 1] < 1e-3
    assert [(o, l, h) for o, l, h, _ in maps.best_heads()][:2] == [(0, 0, 1), (1, 0, 0)]
    table = format_offset_table(maps).splitlines()
    assert table[0].split() == ["head", "o=0", "o=1", "o=2"]
    assert table[1].split()[2].startswith("*1.00")  # L0.H0 best at o=1
    assert table[2].split()[1].startswith("*1.00")  # L0.H1 best at o=0
    assert table[-1].split()[0] == "chance"


def test_attention_weights_and_scores_match_a_hand_computation():
    torch.manual_seed(3)
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=8, block_size=10, vocab_size=6)
    model = GPT(cfg).double()
    ids = [0, 3, 1, 5, 2, 2, 4, 0]
    maps = attention_maps(model, ids, [str(i) for i in ids], offsets=(0, 1, 3, 9))
    # Layer 0 by hand: softmax(q k^T / sqrt(d)) with a causal mask, from the raw weights.
    with torch.no_grad():
        idx = torch.tensor([ids])
        x = model.transformer.wte(idx) + model.transformer.wpe.weight[: len(ids)]
        block = model.transformer.h[0]
        q, k, _ = block.attn.c_attn(block.ln_1(x)).split(cfg.n_embd, dim=-1)
        for h in range(cfg.n_head):
            sl = slice(h * cfg.head_dim, (h + 1) * cfg.head_dim)
            s = q[0, :, sl] @ k[0, :, sl].T / cfg.head_dim**0.5
            s = s.masked_fill(torch.ones_like(s).triu(1).bool(), float("-inf"))
            np.testing.assert_allclose(maps.weights[0, h], s.softmax(-1).numpy(), atol=1e-12)
    # The offset scores by the definition, with plain loops.
    T = len(ids)
    for layer in range(2):
        for h in range(2):
            for j, o in enumerate((0, 1, 3)):
                vals = [maps.weights[layer, h, i, i - o] for i in range(o, T)]
                assert maps.scores[layer, h, j] == pytest.approx(sum(vals) / len(vals), abs=1e-12)
            assert np.isnan(maps.scores[layer, h, 3])  # offset 9 > T - 1: no query reaches it
    assert np.isnan(maps.chance[3])


@pytest.mark.slow  # importing transformers dominates
def test_attention_maps_equal_transformers_gpt2_attentions():
    transformers = pytest.importorskip("transformers")
    from scratchllm.interop import copy_gpt2_weights

    torch.manual_seed(0)
    hf_cfg = transformers.GPT2Config(
        n_layer=2, n_head=2, n_embd=16, n_positions=16, vocab_size=11,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )  # fmt: skip
    hf = transformers.GPT2LMHeadModel(hf_cfg).double().eval()
    hf.config._attn_implementation = "eager"  # the path that returns its weights
    ours = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=16, vocab_size=11,
                         act="gelu_tanh")).double()  # fmt: skip
    copy_gpt2_weights(hf, ours)
    ids = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
    maps = attention_maps(ours, ids, [str(i) for i in ids])
    with torch.no_grad():
        ref = hf(torch.tensor([ids]), output_attentions=True).attentions  # L x (1, H, T, T)
    np.testing.assert_allclose(maps.weights, torch.cat(ref).numpy(), atol=1e-12)


def test_chance_is_the_score_of_a_uniform_head():
    T = 9
    uniform = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]
    offsets = [0, 1, 4, 8]
    np.testing.assert_allclose(offset_scores(uniform[None, None], offsets)[0, 0],
                               chance_scores(T, offsets), atol=1e-12)  # fmt: skip
    # A batch of maps is averaged over the batch.
    batch = np.stack([uniform, np.eye(T)])[None, :, None]  # (L=1, B=2, H=1, T, T)
    assert offset_scores(batch, [0])[0, 0, 0] == pytest.approx((chance_scores(T, [0])[0] + 1) / 2)
    with pytest.raises(ValueError, match="negative"):
        offset_scores(uniform[None, None], [-1])
    with pytest.raises(ValueError, match=r"\(L, H, T, T\)"):
        offset_scores(np.zeros((2, 3, 4)), [0])


def test_lookback_offsets_follow_the_rule():
    assert lookback_offsets(get("markov:order=3,alphabet=6,branch=2")) == (0, 1, 2)
    assert lookback_offsets(get("sticky:k=2")) == (0, 1, 2)
    assert lookback_offsets(get("copy:length=5")) == (5,)
    assert lookback_offsets(get("dyck")) == ()


def test_attention_maps_refuse_other_families_and_bad_lengths():
    with pytest.raises(ValueError, match="need a GPT"):
        attention_maps(RNNLM(RNNConfig(vocab_size=4, n_hidden=4, n_embd=4)), [0], ["a"])
    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=4, block_size=4, vocab_size=4))
    with pytest.raises(ValueError, match="1..4"):
        attention_maps(model, [0] * 5, ["a"] * 5)


@pytest.mark.parametrize("layers, heads, T", [(1, 1, 6), (2, 2, 12), (2, 5, 30)])
def test_attention_grid_keeps_every_text_inside_the_figure(tmp_path, layers, heads, T):
    from scratchllm.evaluation.inspect_attention import GRID_PNG, grid_figure, plot_attention

    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=layers, n_head=heads, n_embd=4 * heads, block_size=32))
    ids = torch.randint(0, 65, (T,)).tolist()
    maps = attention_maps(model, ids, [chr(97 + i % 26) for i in ids])
    if layers == 1:
        assert is_png(plot_attention(maps, tmp_path)[-1]) and (tmp_path / GRID_PNG).is_file()
    fig = grid_figure(maps, maps.tokens)
    fig.canvas.draw()
    box = fig.bbox
    texts = [fig._suptitle] + [ax.title for ax in fig.axes]
    assert "query down, key across" in fig._suptitle.get_text().replace("\n", " ")
    for text in texts:
        extent = text.get_window_extent()
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1, text.get_text()
        assert box.y0 <= extent.y0 and extent.y1 <= box.y1, text.get_text()


# -- RNN ------------------------------------------------------------------------------------


def test_lstm_states_match_torch_lstm_step_by_step():
    torch.manual_seed(0)
    model = RNNLM(RNNConfig(cell="lstm", vocab_size=6, n_embd=5, n_hidden=7, n_layer=2)).double()
    ids = [0, 4, 2, 2, 5, 1, 3]
    act = rnn_activity(model, ids, [str(i) for i in ids])
    ref = torch.nn.LSTM(5, 7, num_layers=2, batch_first=True).double()
    ref.load_state_dict(model.rnn.state_dict())
    hx = None
    hs, cs = [], []
    with torch.no_grad():
        for i in ids:
            _, hx = ref(model.wte(torch.tensor([[i]])), hx)
            hs.append(hx[0][-1, 0].numpy())
            cs.append(hx[1][-1, 0].numpy())
    np.testing.assert_allclose(act.hidden, np.array(hs), atol=1e-12)
    np.testing.assert_allclose(act.cell, np.array(cs), atol=1e-12)
    assert act.kind == "lstm" and act.hidden.shape == (len(ids), 7)


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_rnn_and_gru_states_equal_the_forward_outputs(cell):
    torch.manual_seed(1)
    model = RNNLM(RNNConfig(cell=cell, vocab_size=5, n_embd=4, n_hidden=6, n_layer=2))
    ids = [1, 0, 4, 3, 3, 2]
    act = rnn_activity(model, ids, list("abcdef"))
    with torch.no_grad():
        out, _ = model.rnn(model.wte(torch.tensor([ids])))
    np.testing.assert_allclose(act.hidden, out[0].double().numpy(), atol=1e-6)
    assert act.cell is None
    with pytest.raises(ValueError, match="empty"):
        rnn_activity(model, [], [])


# -- n-gram table ---------------------------------------------------------------------------


def test_bigram_table_equals_counts_and_model_probabilities():
    lang = get("sticky:k=1,classes=2,size=2")
    tok = char_tok(lang)
    ids = tok.encode(lang.corpus(200, seed=1))
    model = NGram(NGramConfig(n=2, vocab_size=tok.vocab_size, smoothing=0.5)).fit(ids)
    table = ngram_table(model, tok)
    pairs = Counter(zip(ids, ids[1:]))
    seen = sorted({a for a, _ in pairs})
    assert table.context_ids[:, 0].tolist() == seen  # every seen context, in id order
    for r, a in enumerate(seen):
        expected = [pairs[(a, b)] for b in range(tok.vocab_size)]
        assert table.counts[r].tolist() == expected
        assert table.context_counts[r] == sum(expected)
        np.testing.assert_allclose(table.probs[r], model.probs([a]).double().numpy(), rtol=1e-6)
        # add-k by hand
        k, V = 0.5, tok.vocab_size
        np.testing.assert_allclose(
            table.probs[r], (np.array(expected) + k) / (sum(expected) + k * V), rtol=1e-6
        )
    assert table.allowed is None and table.mass_on_allowed is None


def test_long_context_table_shows_the_most_frequent_contexts():
    lang = get("markov:order=2,alphabet=4,branch=2,seed=3")
    tok = char_tok(lang)
    ids = tok.encode(lang.corpus(300, seed=0))
    model = NGram(NGramConfig(n=4, vocab_size=tok.vocab_size)).fit(ids)
    table = ngram_table(model, tok, max_rows=5)
    ctx = Counter(tuple(ids[i - 3 : i]) for i in range(3, len(ids)))
    top = sorted(ctx.values(), reverse=True)[:5]
    assert table.context_counts.tolist() == top
    for row, count in zip(table.context_ids, table.context_counts):
        assert ctx[tuple(row)] == count
    assert table.contexts[0] == tok.decode(table.context_ids[0].tolist())


def test_markov_allowed_cells_are_exact_and_a_perfect_model_stays_inside_them():
    lang = get("markov:order=2,alphabet=4,branch=2,seed=3")
    tok = char_tok(lang)
    ids = tok.encode(lang.corpus(400, seed=0))
    model = NGram(NGramConfig(n=3, vocab_size=tok.vocab_size, smoothing=0.0)).fit(ids)
    table = ngram_table(model, tok, max_rows=1000)
    assert table.allowed is None
    table = ngram_table(model, tok, lang, max_rows=1000)
    assert table.allowed_how == "exact"
    for r, window in enumerate(table.contexts):
        if END in window:
            expected = lang.allowed_next(window.rsplit(END, 1)[1])
        else:  # two letters in a row: the sample has started, its context is the window
            expected = set(lang.transitions[window]) | {END}
        assert {tok.chars[i] for i in np.nonzero(table.allowed[r])[0]} == set(expected), window
    # Counts come from valid text and n = context_needed, so all mass is on allowed cells.
    np.testing.assert_allclose(table.mass_on_allowed, 1.0, atol=1e-6)


def test_sticky_allowed_cells_by_observation_match_the_rule():
    lang = get("sticky:k=1,classes=2,size=2")  # unbounded run lengths: not enumerable
    tok = char_tok(lang)
    windows = ["aa", "ab", "aB", "AB", "\na", "a\n", "b\n"]
    allowed, how = rule_allowed(lang, windows, tok.chars)
    assert how.startswith("observed in")
    lower, upper = set("ab"), set("AB")
    expected = {
        "aa": lower | upper | {END},  # run of 2: continue, switch or end
        "ab": lower | upper | {END},
        "aB": upper,  # a run of 1 upper must continue
        "AB": lower | upper | {END},
        "\na": lower,
        "a\n": lower | upper,  # a new sample: any first symbol
        "b\n": lower | upper,
    }
    for r, w in enumerate(windows):
        assert {tok.chars[i] for i in np.nonzero(allowed[r])[0]} == expected[w], w


def test_unigram_table_and_rule_skipped_for_multichar_tokens():
    lang = get("sticky:k=1,classes=2,size=2")
    tok = char_tok(lang)
    model = NGram(NGramConfig(n=1, vocab_size=tok.vocab_size)).fit(tok.encode(lang.corpus(20)))
    table = ngram_table(model, tok, lang)
    assert table.contexts == [""] and table.probs.shape == (1, tok.vocab_size)
    np.testing.assert_allclose(table.probs[0], model.probs([]).double().numpy(), rtol=1e-6)
    assert set(np.array(tok.chars)[table.allowed[0]]) == set(lang.alphabet)
    allowed, why = rule_allowed(lang, ["a"], ["ab", "c"])
    assert allowed is None and "not symbols" in why


def test_ngram_table_errors():
    with pytest.raises(ValueError, match="fit it"):
        ngram_table(NGram(NGramConfig(n=2, vocab_size=3)), CharTokenizer("abc"))
    with pytest.raises(ValueError, match="counting NGram"):
        ngram_table(GPT(GPTConfig(n_layer=1, n_head=1, n_embd=4, vocab_size=3)), None)


# -- inspect_model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sticky():
    lang = get("sticky:k=1,classes=2,size=2")
    return lang, char_tok(lang)


def test_inspect_gpt_writes_embeddings_attention_and_offsets(tmp_path, sticky):
    lang, tok = sticky
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=1, n_embd=8, block_size=16, vocab_size=tok.vocab_size))
    report = inspect_model(model, tok, tmp_path, language=lang)
    names = [p.name for p in report.paths]
    assert names == [
        "embeddings_pca.png",
        "attention_layer0_head0.png",
        "attention_layer1_head0.png",
        "attention_grid.png",
        "attention_offsets.png",
        "attention_offsets.json",
    ]
    assert all(is_png(p) for p in report.paths if p.suffix == ".png")
    assert report.text.startswith(END) and len(report.attention.tokens) == 16
    data = json.loads((tmp_path / "attention_offsets.json").read_text())
    assert data["offsets"] == [0, 1]
    np.testing.assert_allclose(np.array(data["scores"]), report.attention.scores, atol=1e-6)
    assert {(b["offset"], b["layer"], b["head"]) for b in data["best"]} == {
        (o, l, h) for o, l, h, _ in report.attention.best_heads()
    }


def test_inspect_text_is_cut_to_the_context_with_a_note(tmp_path, sticky):
    lang, tok = sticky
    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=4, block_size=6, vocab_size=tok.vocab_size))
    report = inspect_model(model, tok, tmp_path, text="aabbAAbbaa", offsets=[1, 7])
    assert report.text == "aabbAA"
    assert any("cut to its first 6" in n for n in report.notes)
    assert any("[7]" in n for n in report.notes)  # offset 7 reaches before the text
    assert report.attention.offsets == (1, 7)


def test_inspect_rnn_mlp_and_ngram_write_their_plots(tmp_path, sticky):
    lang, tok = sticky
    V = tok.vocab_size
    rnn = RNNLM(RNNConfig(cell="lstm", vocab_size=V, n_embd=4, n_hidden=6, n_layer=1))
    r = inspect_model(rnn, tok, tmp_path / "rnn", text="\naaBB")
    assert [p.name for p in r.paths] == ["embeddings_pca.png", "rnn_hidden.png"]
    assert r.rnn.hidden.shape == (5, 6) and r.rnn.cell.shape == (5, 6)
    mlp = MLPLM(MLPConfig(n=3, vocab_size=V, n_embd=4, n_hidden=8))
    m = inspect_model(mlp, tok, tmp_path / "mlp", language=lang)
    assert [p.name for p in m.paths] == ["embeddings_pca.png"]
    assert m.embeddings.classes == [lang.char_class(c) for c in tok.chars]
    ngram = NGram(NGramConfig(n=2, vocab_size=V)).fit(tok.encode(lang.corpus(50)))
    g = inspect_model(ngram, tok, tmp_path / "ngram", language=lang)
    assert [p.name for p in g.paths] == ["ngram_table.png"] and all(is_png(p) for p in g.paths)


def test_default_text_without_a_language_is_the_models_own_sample(sticky):
    lang, tok = sticky
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=4, block_size=8, vocab_size=tok.vocab_size))
    a = default_text(model, tok, None, seed=3)
    assert a == default_text(model, tok, None, seed=3)  # seeded
    assert a.startswith(END) and len(tok.encode(a)) == 8  # fills the context
    text = default_text(model, tok, lang, seed=0)  # the language's samples after an END
    assert text == (END + lang.corpus(4, seed=0))[:8]


def test_inspect_model_errors(tmp_path, sticky):
    _, tok = sticky

    class Other(LanguageModel):
        family = "other"

    with pytest.raises(ValueError, match="family 'other'.*ngram, mlp, rnn, gpt"):
        inspect_model(Other(None), tok, tmp_path)
    gpt = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=4, block_size=8, vocab_size=tok.vocab_size))
    with pytest.raises(ValueError, match=r"cannot encode the text 'ab\?'.*'\?'"):
        inspect_model(gpt, tok, tmp_path, text="ab?")
    with pytest.raises(ValueError, match="empty"):
        prepare_text(gpt, tok, "")
    with pytest.raises(ValueError, match="tokenizer has 3 tokens"):
        inspect_model(gpt, CharTokenizer("abc"), tmp_path)
    with pytest.raises(ValueError, match="offsets"):
        inspect_model(gpt, tok, tmp_path, text="ab", offsets=[-1])
    with pytest.raises(ValueError, match="cannot encode"):
        inspect_model(gpt, tok, tmp_path, language=get("copy:length=2"))


def test_find_language_reads_state_then_directory_names(tmp_path):
    ckpt = tmp_path / "plain"
    ckpt.mkdir()
    assert find_language(ckpt) is None
    (ckpt / "trainer_state.json").write_text(json.dumps({"step": 1, "language": "sticky:k=3"}))
    lang, where = find_language(ckpt)
    assert lang == get("sticky:k=3") and where.endswith("trainer_state.json")
    study = tmp_path / "markov:order=2" / "gpt" / "last"
    study.mkdir(parents=True)
    lang, where = find_language(study)
    assert lang == get("markov:order=2") and "markov:order=2" in where
    (ckpt / "trainer_state.json").write_text(json.dumps({"language": "sticky:k=99"}))
    with pytest.raises(ValueError, match=r"trainer_state.json: bad language spec 'sticky:k=99'"):
        find_language(ckpt)
    plain = tmp_path / "copy" / "gpt"  # a bare family name is not taken as a spec
    plain.mkdir(parents=True)
    assert find_language(plain) is None
    # The study's run.json, one level above its last/ checkpoint, names it.
    (plain / "run.json").write_text(json.dumps({"key": {"language": "copy:length=3"}}))
    (plain / "last").mkdir()
    lang, where = find_language(plain / "last")
    assert lang == get("copy:length=3") and where.endswith("run.json")
    encoded = tmp_path / "my%3Adir" / "markov%3Aorder%3D3" / "gpt"  # percent-encoded name
    encoded.mkdir(parents=True)
    assert find_language(encoded)[0] == get("markov:order=3")


@pytest.mark.slow
def test_a_trained_gpt_has_a_head_that_reads_the_previous_symbol():
    """markov order 2: the next letter depends on the previous one, so after a short
    training some head's attention mass one back rises far above a uniform head's."""
    lang = get("markov:order=2,alphabet=6,branch=2,seed=0")
    tok = char_tok(lang)
    ids = torch.tensor(tok.encode(lang.corpus(1500, seed=0)))
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=32, vocab_size=7))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        start = torch.randint(0, len(ids) - 33, (16,), generator=gen)
        x = torch.stack([ids[s : s + 32] for s in start])
        y = torch.stack([ids[s + 1 : s + 33] for s in start])
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    text = default_text(model, tok, lang)
    maps = attention_maps(model, tok.encode(text), list(text), lookback_offsets(lang))
    best = next(score for o, _, _, score in maps.best_heads() if o == 1)
    assert best > 3 * maps.chance[1]
