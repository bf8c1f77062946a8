"""Files written whole or not at all, JSON without NaN, and one writer per run directory.

Everything scratchllm writes for a person or a later run (settings, results, configs,
metrics snapshots, plots) is first written in full to a temporary sibling, then renamed
over its name: a rename is atomic, so a reader (or a run resumed after a crash) sees the
old file or the new one, never half of one. The temporary name carries the process id,
so two processes writing the same file do not write into each other's temporary.

JSON has no NaN or infinity; ``finite`` turns them into ``null`` (a diverged loss is
written as "no value", not as the non-standard ``NaN`` most readers reject).

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_json(d / "row.json", {"loss": float("nan"), "step": 3}).read_text()
'{\\n  "loss": null,\\n  "step": 3\\n}\\n'
>>> read_json(d / "missing.json") is None
True

Nothing here imports anything beyond the standard library.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:  # POSIX: the kernel's advisory locks, released when a process dies
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` to fill a temporary sibling of ``path``, then rename it to
    ``path``. The parent directory is created; on an error the temporary is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` as UTF-8 (no newline translation), atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: str | Path, value: Any, indent: int | None = 2) -> Path:
    """Write ``value`` as JSON (NaN and infinity as null) and a final newline, atomically.

    Non-ASCII text is kept as is, so a person can read it; a lone surrogate (legal in a
    Python str, not in UTF-8) makes the whole file fall back to ``\\uXXXX`` escapes."""
    text = json.dumps(finite(value), indent=indent, ensure_ascii=False) + "\n"
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = (json.dumps(finite(value), indent=indent) + "\n").encode("ascii")
    return write_bytes(path, data)


def read_json(path: str | Path) -> Any:
    """The JSON value in ``path``, or None when it is missing, unreadable or not JSON
    (for caches and stamps, where any of those means "not there")."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (in nested dicts and lists) as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


# -- output directories -------------------------------------------------------------------------


def output_directory(path: str | Path, create: bool = True) -> Path:
    """Create the directory ``path`` (and its parents) for a command to write into; a path
    that is (or runs through) a file is an error that says so, not a bare errno. With
    ``create=False`` only check (so that a command that fails later leaves nothing).

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
    >>> _ = f.write_text("mine")
    >>> output_directory(f)
    Traceback (most recent call last):
    ...
    NotADirectoryError: ... is a file, not a directory; choose a directory to write into ...
    """
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise NotADirectoryError(
                f"{p} is a file, not a directory; choose a directory to write into (it is "
                "created if missing), or move the file away"
            )
        if p.is_dir():
            break
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


# -- one writer per run directory ---------------------------------------------------------------

LOCK_FILE = ".lock"  # in a run directory while a process writes it: who (JSON)


class RunInUseError(OSError):
    """Another live process writes the run directory (``holder``: its lock record)."""

    def __init__(self, message: str, holder: dict[str, Any]) -> None:
        super().__init__(message)
        self.holder = holder


# Locks this process holds: lock file path -> [file descriptor, depth]. A writer that calls
# another writer on the same directory (``train_run`` -> ``Trainer.train``) nests, not blocks.
_HELD: dict[str, list[int]] = {}


class RunLock:
    """One writer per run directory: ``with RunLock("runs/x"): ...`` or ``run_lock("runs/x")``.

    The lock is ``DIR/.lock``, a JSON record of the holder (pid, host, command, start time),
    held with ``flock`` so that the kernel releases it when the process dies, ``kill -9``
    included. A second writer is refused with ``RunInUseError`` ("run in use by pid N").
    A lock file left by a writer that died is taken over, and ``note`` says so. Readers
    (``sample``, ``eval``, ``inspect``) take no lock; ``lock_holder`` tells them whether a
    writer is at work. The same process may nest locks on one directory.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with RunLock(d) as lock:
    ...     (Path(d) / LOCK_FILE).exists(), lock_holder(d)["pid"] == os.getpid()
    (True, True)
    >>> (Path(d) / LOCK_FILE).exists()
    False
    """

    def __init__(self, directory: str | Path, command: str | None = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.command = command if command is not None else _command_line()
        self.note: str | None = None  # set when a dead writer's lock was taken over
        self._made = False  # whether acquire created the directory (release removes it if empty)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> RunLock:
        key = os.path.realpath(self.path)
        if key in _HELD:
            _HELD[key][1] += 1
            return self
        # Made here, for the lock: a writer that fails before writing anything leaves none.
        self._made = not self.directory.exists()
        output_directory(self.directory)
        fd, previous = _lock_file(self.path)
        if previous is not None:
            self.note = (
                f"took over {self.path} from pid {previous.get('pid')} on "
                f"{previous.get('host')}, which is no longer running (it stopped without "
                "releasing it, e.g. killed)"
            )
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
        os.fsync(fd)
        _HELD[key] = [fd, 1]
        return self

    def release(self) -> None:
        key = os.path.realpath(self.path)
        held = _HELD.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1]:
            return
        del _HELD[key]
        # Unlink while still holding it: a writer waiting on the old file sees it gone.
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(held[0])  # closing the descriptor releases the flock
        if self._made:
            with contextlib.suppress(OSError):  # (not empty: the writer wrote something)
                self.directory.rmdir()


def run_lock(directory: str | Path, command: str | None = None) -> RunLock:
    """``RunLock(directory, command)``: ``with run_lock(out): ...`` around a writer."""
    return RunLock(directory, command)


def lock_holder(directory: str | Path) -> dict[str, Any] | None:
    """The lock record of the live process writing ``directory`` (this one included), or
    None when no writer is at work (no lock file, or one left by a process that died)."""
    path = Path(directory) / LOCK_FILE
    if os.path.realpath(path) in _HELD:
        return _read_record(path) or {"pid": os.getpid(), "host": socket.gethostname()}
    if fcntl is not None:
        if not path.exists() or not _flocked(path):
            return None
        return _read_record(path) or {"pid": None, "host": None}  # (its record comes next)
    record = _read_record(path)
    return record if record is not None and _alive(record) else None


def _lock_file(path: Path) -> tuple[int, dict[str, Any] | None]:
    """Open and lock ``path``; returns ``(fd, the record a dead writer left or None)``."""
    if fcntl is None:  # no flock (Windows): an exclusive create, and the pid for staleness
        return _lock_file_by_pid(path)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        for attempt in range(5):  # a reader's probe (``_flocked``) holds it for an instant
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if attempt < 4:
                    time.sleep(0.05)
        else:
            holder = _read_record(path) or {}
            os.close(fd)
            raise RunInUseError(_in_use(path.parent, holder), holder)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # else we locked a file its writer unlinked on release: open the new one
            return fd, _read_record(path)
        os.close(fd)


def _lock_file_by_pid(path: Path) -> tuple[int, dict[str, Any] | None]:
    previous = None
    for _ in range(2):
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), previous
        except FileExistsError:
            previous = _read_record(path) or {}
            if _alive(previous):
                raise RunInUseError(_in_use(path.parent, previous), previous) from None
            path.unlink(missing_ok=True)
    raise RunInUseError(_in_use(path.parent, previous or {}), previous or {})


def _flocked(path: Path) -> bool:
    """Whether a process holds the flock on ``path`` (tested with a shared lock, which a
    writer's exclusive ``LOCK_NB`` would refuse for only this instant)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _read_record(path: Path) -> dict[str, Any] | None:
    value = read_json(path)
    return value if isinstance(value, dict) and value else None


def _alive(record: dict[str, Any]) -> bool:
    """Whether the process of a lock record runs (on another host: assumed so)."""
    if record.get("host") != socket.gethostname():
        return True
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _in_use(directory: Path, holder: dict[str, Any]) -> str:
    pid, host = holder.get("pid", "?"), holder.get("host", "?")
    what = f"`{holder['command']}`, " if holder.get("command") else ""
    since = f"since {holder['started']}" if holder.get("started") else "now"
    return (
        f"run in use by pid {pid} on {host} ({what}{since}): {directory} has one writer at a "
        "time. Wait for it to finish or stop it, or write to another --out; sample, eval and "
        "inspect can read the run meanwhile"
    )


def _command_line() -> str:
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("__main__.py", "scratchllm"):
        argv[0] = "scratchllm"
    return " ".join(argv)
