"""Where training text comes from: a file, a synthetic language, or the built-in corpus.

``resolve_data(arg)`` turns what a user types after ``--data`` into a ``Corpus``:

- a path to an existing file: its UTF-8 text (``read_text_file``);
- ``"stdlib-docs"`` (alias ``"default"``): the docstrings of the installed Python standard
  library, about 1.6 MB of English that every machine with Python has: no download;
- a language spec such as ``"markov:order=3"``: ``n_samples`` generated samples, joined.

>>> corpus = resolve_data("counting:digits=2", n_samples=3, seed=0)   # doctest: +SKIP
>>> corpus.text                                                      # doctest: +SKIP
'17,18,19\\n40,41\\n88,89,90,91\\n'
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import os
import platform
import random
import re
import sys
import sysconfig
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scratchllm.files import write_text

DEFAULT_NAMES = ("stdlib-docs", "default")
CHUNK_BYTES = 1 << 22  # bytes read at a time when streaming a file

# Parts of the standard library left out of the docstring corpus: test suites (their
# docstrings describe tests, not the library), the IDLE editor, the 2to3 tool, demos,
# generated tables (encodings, pydoc_data) and installed third-party packages.
_SKIP_DIRS = frozenset(
    {
        "test",
        "tests",
        "idlelib",
        "lib2to3",
        "turtledemo",
        "ensurepip",
        "encodings",
        "pydoc_data",
        "site-packages",
        "dist-packages",
        "__pycache__",
        "__phello__",
        "lib-dynload",
    }
)
_EXTRACT_VERSION = 1  # bump when the extraction changes, so old caches are not reused


@dataclass
class Corpus:
    """Text to train or evaluate on, and what is known about its structure.

    ``samples`` (for a language) are the individual samples, each ending with the
    language's end marker; ``mask`` marks, per character of ``text``, whether predicting
    that character counts in the loss (e.g. only the answer of an addition problem).
    """

    text: str
    source: str  # how it was made: a file path, "stdlib-docs" or a language spec
    samples: list[str] | None = None
    mask: list[bool] | None = None
    language: Any = field(default=None, repr=False)  # the Language object, for a spec


# -- files ----------------------------------------------------------------------------------


def read_text_file(path: str | Path) -> str:
    """The whole text of a UTF-8 file; a bad byte is a ``ValueError`` naming its offset."""
    return "".join(iter_text_file(path))


def iter_text_file(path: str | Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[str]:
    """Stream a UTF-8 file as text pieces of about ``chunk_bytes``, in constant memory.

    Each piece but the last ends just after a newline where the chunk has one, so a
    tokenizer that works on whole lines sees whole lines.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path} is a directory; pass a text file")
    offset = 0  # file offset of data[0]
    carry_bytes = b""
    carry_text = ""
    with path.open("rb") as f:
        while True:
            chunk = f.read(chunk_bytes)
            data = carry_bytes + chunk
            try:
                text = data.decode("utf-8")
                carry_bytes = b""
            except UnicodeDecodeError as e:
                truncated = e.reason == "unexpected end of data" and e.end == len(data)
                if not (truncated and chunk):  # a real bad byte, not a character cut in two
                    bad = data[e.start : e.start + 1].hex()
                    raise ValueError(
                        f"{path}: not UTF-8 text: byte 0x{bad} at byte offset "
                        f"{offset + e.start} ({e.reason}); pass a text file, or convert this "
                        "one to UTF-8 (e.g. iconv -f latin1 -t utf-8)"
                    ) from None
                text, carry_bytes = data[: e.start].decode("utf-8"), data[e.start :]
            offset += len(data) - len(carry_bytes)
            text = carry_text + text
            if not chunk:
                if text:
                    yield text
                return
            cut = text.rfind("\n") + 1 or len(text)  # no newline at all: hold nothing back
            carry_text = text[cut:]
            if cut:
                yield text[:cut]


# -- synthetic languages ----------------------------------------------------------------------


def text_from_spec(spec: Any, n_samples: int, seed: int = 0, source: str | None = None) -> Corpus:
    """``n_samples`` samples of the language ``spec`` (a spec string or a ``Language``),
    concatenated (each ends with END); ``source`` records how it was named (default: the
    spec as given).

    The per-character ``mask`` comes from the language's ``answer_mask`` (all True for a
    language whose every character is worth predicting).
    """
    from scratchllm.data import languages

    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples ({n_samples!r}) must be a positive integer")
    lang = languages.get(spec) if isinstance(spec, str) else spec
    if source is None:
        source = spec if isinstance(spec, str) else lang.spec
    rng = random.Random(seed)
    samples = [lang.sample(rng) for _ in range(n_samples)]
    mask: list[bool] = []
    for s in samples:
        mask.extend(lang.answer_mask(s))
    return Corpus(text="".join(samples), source=source, samples=samples, mask=mask, language=lang)


# -- the built-in corpus ----------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/scratchllm``, else ``~/.cache/scratchllm`` (read when called)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "scratchllm"


def stdlib_docs(cache_dir: str | Path | None = None, stdlib_dir: str | Path | None = None) -> str:
    """The docstrings of the Python standard library as one text (extracted once, cached).

    The first call parses every module (a few seconds) and writes the text to
    ``cache_dir`` (default: ``default_cache_dir()``); later calls read the file. The cache
    is named after the Python version and the extraction, so it is the same text on every
    run with the same Python.
    """
    root = Path(stdlib_dir) if stdlib_dir is not None else Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: standard library directory not found")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = hashlib.sha256(
        f"{_EXTRACT_VERSION}|{platform.python_implementation()}|{sys.version}|{root}".encode()
    ).hexdigest()[:16]
    path = cache / f"stdlib-docs-{sys.version_info[0]}.{sys.version_info[1]}-{key}.txt"
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            pass  # a damaged cache is rebuilt below
    text = extract_docstrings(root)
    # An unwritable cache only costs the next call another extraction.
    with contextlib.suppress(OSError):
        write_text(path, text)  # atomic: a concurrent reader never sees half a file
    return text


def extract_docstrings(root: str | Path) -> str:
    """Every module, class and function docstring under ``root``, cleaned, in a fixed order.

    Files are visited in sorted path order (skipping test suites and tools, see
    ``_SKIP_DIRS``), docstrings in source order; each is dedented (``inspect.cleandoc``),
    Unicode-normalised (NFC), stripped of trailing spaces, and kept once (many methods
    share a docstring). Docstrings are separated by a blank line.
    """
    root = Path(root)
    files = sorted(
        p
        for p in root.rglob("*.py")
        if not _SKIP_DIRS.intersection(p.relative_to(root).parts[:-1])
        and not p.name.startswith("_sysconfigdata")
    )
    seen: set[str] = set()
    docs: list[str] = []
    for path in files:
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue  # e.g. a file for another Python version: not part of this corpus
        for doc in _docstrings(tree):
            doc = _clean(doc)
            if len(doc) >= 20 and doc not in seen:  # skip one-word stubs like "Return x."
                seen.add(doc)
                docs.append(doc)
    return "\n\n".join(docs) + "\n"


def _docstrings(node: ast.AST) -> Iterator[str]:
    """Docstrings of ``node`` and everything defined in it, depth first in source order."""
    if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        doc = ast.get_docstring(node, clean=True)
        if doc:
            yield doc
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.expr):
            continue  # definitions never hide inside expressions
        yield from _docstrings(child)


_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n{3,}")


def _clean(doc: str) -> str:
    doc = unicodedata.normalize("NFC", doc).replace("\t", "    ").replace("\r", "")
    doc = _TRAILING_SPACE.sub("", doc)
    return _BLANK_LINES.sub("\n\n", doc).strip()


# -- the one entry point ----------------------------------------------------------------------


def language_of(arg: str | Path) -> Any:
    """The ``Language`` a data argument names, or None for a file or the built-in corpus.

    This is how a run's language is found, once: ``resolve_data`` uses it, and so does the
    Trainer with a dataset's recorded ``source``. A bad spec of a known family is a
    ``ValueError`` saying what is wrong with it.

    >>> language_of("sticky:k=2").context_needed, language_of("stdlib-docs")
    (4, None)
    """
    from scratchllm.data import languages

    text_arg = str(arg)
    if text_arg in DEFAULT_NAMES or Path(text_arg).expanduser().is_file():
        return None
    if text_arg.split(":", 1)[0].strip().lower() in languages.FAMILIES:
        return languages.get(text_arg)
    return None


def resolve_data(
    arg: str | Path,
    *,
    n_samples: int = 10_000,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> Corpus:
    """A file path, ``"stdlib-docs"``/``"default"`` or a language spec -> a ``Corpus``.

    ``n_samples`` and ``seed`` only matter for a language spec.
    """
    text_arg = str(arg)
    if text_arg in DEFAULT_NAMES:
        return Corpus(text=stdlib_docs(cache_dir), source="stdlib-docs")
    path = Path(text_arg).expanduser()
    if path.is_file():
        return Corpus(text=read_text_file(path), source=str(path))
    language = language_of(text_arg)
    if language is not None:
        return text_from_spec(language, n_samples=n_samples, seed=seed, source=text_arg)
    from scratchllm.data import languages

    known = list(languages.FAMILIES)
    hint = f" ({path} is a directory, not a file)" if path.is_dir() else ""
    raise ValueError(
        f"--data {text_arg!r} is not a file, a language or the built-in corpus{hint}. Use a path "
        f"to an existing UTF-8 text file, 'stdlib-docs' (alias 'default': Python's docstrings), "
        f"or a language spec such as 'markov:order=3'; languages: {', '.join(known)}"
    )
