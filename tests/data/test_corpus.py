"""Corpora: UTF-8 files (streamed, with byte offsets in errors), the stdlib-docstring corpus,
language specs, and ``resolve_data``."""

from __future__ import annotations

import ast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.data import corpus as corpus_mod
from scratchllm.data.corpus import (
    extract_docstrings,
    iter_text_file,
    read_text_file,
    resolve_data,
    stdlib_docs,
    text_from_spec,
)

# -- files --------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    text=st.text(st.characters(blacklist_categories=["Cs"]), max_size=200), chunk=st.integers(1, 17)
)
def test_streaming_gives_back_the_text(tmp_path_factory, text, chunk):
    path = tmp_path_factory.mktemp("s") / "t.txt"
    path.write_bytes(text.encode("utf-8"))
    pieces = list(iter_text_file(path, chunk_bytes=chunk))
    assert "".join(pieces) == text  # multi-byte characters cut by a chunk are rejoined
    assert all(pieces)
    for piece in pieces[:-1]:  # where a chunk had a newline, pieces end just after one
        assert piece.endswith("\n") or "\n" not in piece


def test_bad_utf8_names_file_and_byte_offset(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes("héllo wörld\n".encode() * 10 + b"abc\xffdef")
    with pytest.raises(ValueError, match=r"bad.txt: not UTF-8 text: byte 0xff at byte offset 143"):
        read_text_file(path)
    with pytest.raises(ValueError, match=r"byte offset 143"):
        list(iter_text_file(path, chunk_bytes=5))  # same offset when the bad byte is chunks in
    cut = tmp_path / "cut.txt"
    cut.write_bytes("ok é".encode()[:-1])  # a file ending inside a two-byte character
    with pytest.raises(ValueError, match=r"byte 0xc3 at byte offset 3"):
        read_text_file(cut)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt: no such file"):
        read_text_file(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="is a directory"):
        read_text_file(tmp_path)


# -- the stdlib docstring corpus ----------------------------------------------------------------


def make_fake_stdlib(root):
    (root / "pkg").mkdir(parents=True)
    (root / "test").mkdir()
    (root / "idlelib").mkdir()
    (root / "b.py").write_text(
        '"""Module b: the second file in sorted order."""\n'
        "def f():\n"
        '    """\tReturn something useful.   \n\n\n\n    Indented  second paragraph."""\n'
        "class C:\n"
        '    """A class with a docstring long enough."""\n'
        "    def m(self):\n"
        '        """Return something useful.\n\n        Indented  second paragraph."""\n'
    )
    (root / "a.py").write_text('"""Module a comes first, sorted by path."""\nx = 1\n')
    (root / "pkg" / "c.py").write_text('def g():\n    """Short."""\n    """not a docstring"""\n')
    (root / "test" / "test_x.py").write_text('"""Tests are skipped entirely, always."""\n')
    (root / "idlelib" / "x.py").write_text('"""IDLE is skipped entirely, always."""\n')
    (root / "broken.py").write_text("def (:\n")  # unparsable files are skipped


def test_extraction_is_ordered_clean_and_deduplicated(tmp_path):
    make_fake_stdlib(tmp_path)
    text = extract_docstrings(tmp_path)
    assert text == (
        "Module a comes first, sorted by path.\n\n"
        "Module b: the second file in sorted order.\n\n"
        "Return something useful.\n\nIndented  second paragraph.\n\n"
        "A class with a docstring long enough.\n"
    )


def test_extraction_of_real_modules_matches_ast_walk(tmp_path):
    """Two real stdlib modules, against a reference built from ast.walk in line order."""
    import shutil
    import sysconfig
    from pathlib import Path

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in ("textwrap.py", "bisect.py"):
        shutil.copy(stdlib / name, tmp_path / name)
    expected, seen = [], set()
    for name in ("bisect.py", "textwrap.py"):
        tree = ast.parse((tmp_path / name).read_text(encoding="utf-8"))
        kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        nodes = sorted(
            (n for n in ast.walk(tree) if isinstance(n, kinds)),
            key=lambda n: getattr(n, "lineno", 0),
        )
        for node in nodes:
            doc = ast.get_docstring(node, clean=True)
            if not doc:
                continue
            doc = "\n".join(line.rstrip() for line in doc.expandtabs(4).split("\n"))
            while "\n\n\n" in doc:
                doc = doc.replace("\n\n\n", "\n\n")
            doc = doc.strip()
            if len(doc) >= 20 and doc not in seen:
                seen.add(doc)
                expected.append(doc)
    assert len(expected) > 10
    assert extract_docstrings(tmp_path) == "\n\n".join(expected) + "\n"


def test_stdlib_docs_is_cached(tmp_path, monkeypatch):
    make_fake_stdlib(tmp_path / "lib")
    first = stdlib_docs(cache_dir=tmp_path / "cache", stdlib_dir=tmp_path / "lib")
    cached = list((tmp_path / "cache").glob("stdlib-docs-*.txt"))
    assert len(cached) == 1 and cached[0].read_text(encoding="utf-8") == first

    def no_extraction(root):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(corpus_mod, "extract_docstrings", no_extraction)
    assert stdlib_docs(cache_dir=tmp_path / "cache", stdlib_dir=tmp_path / "lib") == first


def test_stdlib_docs_missing_stdlib(tmp_path):
    with pytest.raises(FileNotFoundError, match="standard library directory not found"):
        stdlib_docs(cache_dir=tmp_path, stdlib_dir=tmp_path / "none")


@pytest.mark.slow
def test_real_stdlib_corpus_is_large_english_and_deterministic(tmp_path):
    text = stdlib_docs(cache_dir=tmp_path)
    assert 1_000_000 < len(text) < 4_000_000
    assert sum(c.isascii() for c in text) / len(text) > 0.999
    for phrase in ("Return ", "the ", "file", "object"):
        assert text.count(phrase) > 500
    assert stdlib_docs(cache_dir=tmp_path) == text  # from the cache: same text


# -- languages and resolve_data ---------------------------------------------------------------


def test_text_from_spec_is_samples_with_mask():
    c = text_from_spec("addition:digits=2", n_samples=30, seed=5)
    assert len(c.samples) == 30 and c.text == "".join(c.samples)
    assert len(c.mask) == len(c.text)
    assert all(c.language.verify(s).valid for s in c.samples)
    assert all(s.endswith("\n") for s in c.samples)
    # the mask covers the answers (after '=') and not the question
    at = 0
    for s in c.samples:
        m = c.mask[at : at + len(s)]
        eq = s.index("=")
        assert not any(m[: eq + 1]) and all(m[eq + 1 :])
        at += len(s)
    assert text_from_spec("addition:digits=2", 30, seed=5).text == c.text
    assert text_from_spec("addition:digits=2", 30, seed=6).text != c.text


def test_resolve_data_choices(tmp_path, monkeypatch):
    path = tmp_path / "my.txt"
    path.write_text("some text\n", encoding="utf-8")
    c = resolve_data(path)
    assert c.text == "some text\n" and c.samples is None and c.source == str(path)
    lang = resolve_data("markov:order=2", n_samples=5, seed=1)
    assert len(lang.samples) == 5 and lang.language is not None
    monkeypatch.setattr(corpus_mod, "stdlib_docs", lambda cache_dir=None: "DOCS")
    assert resolve_data("default").text == "DOCS"
    assert resolve_data("stdlib-docs").source == "stdlib-docs"


def test_resolve_data_unknown_lists_choices(tmp_path):
    with pytest.raises(ValueError, match="stdlib-docs.*markov") as e:
        resolve_data(tmp_path / "missing.txt")
    assert "missing.txt" in str(e.value)
    with pytest.raises(ValueError, match="is a directory"):
        resolve_data(tmp_path)
    with pytest.raises(ValueError, match="n_samples"):
        text_from_spec("markov:order=2", n_samples=0)
