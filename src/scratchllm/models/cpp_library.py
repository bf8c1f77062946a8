"""A C++ source compiled on first use and called through ctypes: the decode step
(``decode_kernel.cpp``), the training kernels (``train_kernel.cpp``) and AdamW's update
(``adamw_kernel.cpp``).

``Library.load()`` compiles the source with the system's C++ compiler (``$CXX``, else
``g++``, else ``c++``; no PyTorch headers, a few seconds of CPU time) into
``$XDG_CACHE_HOME/scratchllm/kernels/`` (default ``~/.cache``), keyed by a hash of the
source and the local headers it includes, the flags, the compiler and the CPU, and later
processes reuse it. If there is no compiler or the build fails, ``load()`` warns once,
returns None and keeps the reason in ``failure()``; every caller then stays on its
PyTorch path, which remains the reference the tests hold each kernel to.

The library links the same ``libgomp`` as PyTorch, so its OpenMP threads are PyTorch's.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

BUILD_TIMEOUT_S = 300


def cache_dir() -> Path:
    """Where built kernels are kept: the user's cache, or the temp dir when that is not
    writable."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = base / "scratchllm" / "kernels"
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"scratchllm-kernels-{user}"


def compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def cpu_id() -> str:
    """What ``-march=native`` depends on: the CPU's feature flags."""
    return cpu_field("flags", "Features") or platform.processor() or platform.machine()


def cpu_field(*names: str) -> str | None:
    """The first CPU's line of ``/proc/cpuinfo`` whose field is one of ``names`` (``flags``,
    ``vendor_id``), whole; None where there is no such line or no such file."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() in names:
                return line
    except OSError:
        pass
    return None


def _vector_width() -> tuple[str, ...]:
    """On an x86 CPU with AVX-512, loops the compiler vectorises use whole 512-bit registers:
    at ``-march=native`` GCC prefers 256-bit ones there, and the GELU loops then take 1.4x the
    time."""
    if platform.machine().lower() in ("x86_64", "amd64") and " avx512f" in cpu_id():
        return ("-mprefer-vector-width=512",)
    return ()


FLAGS = ("-O3", "-march=native", *_vector_width(), "-fopenmp", "-shared", "-fPIC", "-std=c++17")

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


class Library:
    """One C++ source file, built on first use.

    ``what`` names it in the warning when it cannot be built (``"C++ decode step"``),
    ``fallback`` says what runs instead; ``declare(lib)`` sets the argument and return
    types of its functions once it is loaded. ``flags`` are compiler flags for this source
    only, after ``FLAGS``.
    """

    def __init__(
        self,
        source: Path,
        what: str,
        fallback: str,
        declare: Callable[[ctypes.CDLL], None],
        flags: tuple[str, ...] = (),
    ) -> None:
        self.source = source
        self.flags = (*FLAGS, *flags)
        self.what = what
        self.fallback = fallback
        self.declare = declare
        self.lib: ctypes.CDLL | None = None
        self.failed: str | None = None  # why it could not be built (warned once)
        self._lock = threading.Lock()

    def texts(self) -> list[bytes]:
        """The source and the local headers it includes (``#include "x.h"``, beside it)."""
        text = self.source.read_bytes()
        headers = _INCLUDE.findall(text.decode(errors="replace"))
        return [text, *((self.source.parent / h).read_bytes() for h in headers)]

    def build(self, cxx: str, out: Path) -> None:
        """Compile into the shared library ``out`` (atomically: a half-written file never
        takes its place). Raises OSError with the compiler's message on failure."""
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".so.tmp")
        os.close(fd)
        try:
            proc = subprocess.run(
                [cxx, *self.flags, str(self.source), "-o", tmp],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
            )
            if proc.returncode != 0:
                lines = (proc.stderr or proc.stdout).strip().splitlines()
                errors = [line.strip() for line in lines if "error" in line.lower()]
                first = errors[0] if errors else (lines[-1] if lines else f"exit {proc.returncode}")
                raise OSError(f"{cxx} failed: {first}")
            os.replace(tmp, out)
        except subprocess.TimeoutExpired:
            raise OSError(f"{cxx} took over {BUILD_TIMEOUT_S} s") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def path(self, cxx: str) -> Path:
        """The cached library for this source, compiler and CPU."""
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60)
        key = hashlib.sha256()
        for part in (*self.texts(), " ".join(self.flags).encode(), version.stdout.encode()):
            key.update(part)
        key.update(cpu_id().encode())
        return cache_dir() / f"{self.source.stem}-{key.hexdigest()[:16]}.so"

    def load(self) -> ctypes.CDLL | None:
        """The compiled library (built on the first call of the process if not cached), or
        None when it cannot be built here; the reason is warned once and kept in
        ``failed``."""
        if self.lib is not None or self.failed is not None:
            return self.lib
        with self._lock:
            if self.lib is not None or self.failed is not None:
                return self.lib
            try:
                cxx = compiler()
                if cxx is None:
                    raise OSError("no C++ compiler found (install g++ or set CXX)")
                path = self.path(cxx)
                if not path.is_file():
                    self.build(cxx, path)
                lib = ctypes.CDLL(str(path))
                self.declare(lib)
                self.lib = lib
            except (OSError, subprocess.SubprocessError, AttributeError) as e:
                self.failed = str(e)
                warnings.warn(
                    f"scratchllm: the {self.what} is unavailable ({self.failed}); {self.fallback}",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return self.lib
