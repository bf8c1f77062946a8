"""Run a docs page the way a reader would: its commands and its examples, in order.

A page's runnable parts are

- every ``scratchllm ...`` line of its ```bash blocks (a line ending in a backslash goes on
  on the next; ``#`` starts a comment; ``echo TEXT | scratchllm ...``, ``< FILE`` and
  ``> FILE`` work as in a shell), run through ``scratchllm.cli.main`` in this process; a
  command that ends in the comment ``# exits N`` must exit with status N (a refusal the
  page shows), every other one with 0;
- every ```python run block (the word ``run`` after ``python`` marks an example that runs;
  plain ```python blocks are illustrations), executed in one namespace shared by the
  page's blocks.

``run_page`` runs them in document order in the current directory (a test chdirs to a
scratch directory first) and fails on the first command that exits non-zero or example
that raises, naming it. Other lines (``ls``, ``cat``) are not run.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
_BLOCK = re.compile(r"^```(bash|python run)[ \t]*\n(.*?)^```", re.S | re.M)


@dataclass
class Command:
    argv: list[str]  # after "scratchllm"
    stdin: str | None = None  # echo TEXT | ..., or < FILE (read when run)
    stdin_file: str | None = None
    stdout_file: str | None = None  # > FILE
    exit_code: int = 0  # "# exits N" at the end of the line


@dataclass
class Step:
    kind: str  # "command" or "python"
    command: Command | None = None
    code: str = ""
    line: int = 0  # where the block starts in the page


@dataclass
class PageRun:
    outputs: list[tuple[Step, str]] = field(default_factory=list)  # each step and its stdout
    errors: list[tuple[Step, str]] = field(default_factory=list)  # each command's stderr
    namespace: dict = field(default_factory=dict)  # the python examples' variables

    def output_of(self, *argv_start: str) -> str:
        """The stdout of the first command whose arguments start with ``argv_start``."""
        for step, out in self.outputs:
            if step.command and step.command.argv[: len(argv_start)] == list(argv_start):
                return out
        raise KeyError(f"no command scratchllm {' '.join(argv_start)} ... in the page")

    def errors_of(self, *argv_start: str) -> list[str]:
        """The stderr of every command whose arguments start with ``argv_start``."""
        return [
            err
            for step, err in self.errors
            if step.command.argv[: len(argv_start)] == list(argv_start)
        ]


def steps(text: str) -> list[Step]:
    """The runnable steps of a page's text, in order."""
    out = []
    for m in _BLOCK.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        if m.group(1) == "python run":
            out.append(Step("python", code=m.group(2), line=line))
            continue
        for command in bash_commands(m.group(2)):
            out.append(Step("command", command=command, line=line))
    return out


def bash_commands(block: str) -> list[Command]:
    """The ``scratchllm`` commands of one bash block's text."""
    commands = []
    for logical in re.sub(r"\\\n\s*", " ", block).splitlines():
        expected = re.search(r"#\s*exits\s+(\d+)\s*$", logical)
        words = shlex.split(logical, comments=True)
        if not words:
            continue
        stdin = None
        if words[0] == "echo" and "|" in words:
            bar = words.index("|")
            stdin, words = " ".join(words[1:bar]) + "\n", words[bar + 1 :]
        if not words or words[0] != "scratchllm":
            continue
        command = Command([], stdin=stdin, exit_code=int(expected.group(1)) if expected else 0)
        rest = iter(words[1:])
        for w in rest:
            if w == "<":
                command.stdin_file = next(rest)
            elif w == ">":
                command.stdout_file = next(rest)
            elif w == "|":
                raise ValueError(f"a pipe between commands is not run by the docs tests: {logical}")
            else:
                command.argv.append(w)
        commands.append(command)
    return commands


def benchmark_commands(page: str | Path) -> list[list[str]]:
    """The ``python benchmarks/...`` lines of a page's bash blocks, split into words
    (``python`` first). The docs tests of benchmark pages run them with quick settings;
    ``run_page`` does not."""
    out = []
    for m in _BLOCK.finditer(Path(page).read_text(encoding="utf-8")):
        if m.group(1) != "bash":
            continue
        for logical in re.sub(r"\\\n\s*", " ", m.group(2)).splitlines():
            if logical.startswith("python benchmarks/"):
                out.append(shlex.split(logical, comments=True))
    return out


def run_page(page: str | Path, capsys) -> PageRun:  # noqa: ANN001 (pytest's capsys)
    """Run every step of ``page`` (a path, or a name under docs/) in the current directory."""
    from scratchllm.cli import main

    path = Path(page) if Path(page).is_file() else DOCS / page
    done = PageRun()
    for step in steps(path.read_text(encoding="utf-8")):
        where = f"{path.name}:{step.line}"
        if step.kind == "python":
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(step.code, where, "exec"), done.namespace)
            done.outputs.append((step, out.getvalue()))
            continue
        c = step.command
        stdin = Path(c.stdin_file).read_text(encoding="utf-8") if c.stdin_file else c.stdin
        saved = sys.stdin
        sys.stdin = io.StringIO(stdin if stdin is not None else "")
        try:
            code = main(c.argv)
        finally:
            sys.stdin = saved
        captured = capsys.readouterr()
        assert code == c.exit_code, (where, c.argv, captured.out[-2000:], captured.err[-2000:])
        if c.stdout_file:
            Path(c.stdout_file).write_text(captured.out, encoding="utf-8")
        done.outputs.append((step, captured.out))
        done.errors.append((step, captured.err))
    return done
