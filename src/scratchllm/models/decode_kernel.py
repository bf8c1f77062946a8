"""The optional C++ decode step (``decode_kernel.cpp``): built on first use, called with ctypes.

``gpt_decode.decode_token_torch`` runs a step as about a dozen PyTorch kernels per block,
and on a CPU each costs 2-170 us of dispatch while the arithmetic of a small model's step
is a few microseconds. The C++ twin runs a whole ``forward_step`` in one call (a prompt in
chunks of ``CHUNK_ROWS`` tokens, or one token per row): one loop over the layers, each
matrix product streaming its weight rows once for all batch rows, attention and the cache
write per head, and no allocation.

It is optional. The first time a plan wants it, ``load()`` compiles the source
(``cpp_library``: about 5 s of CPU time with g++ 12, cached per source, compiler and CPU).
If there is no compiler or the build fails, ``load()`` warns once and returns None, and
decoding stays on the PyTorch path, which remains the reference:
``tests/models/test_decode_kernel.py`` holds the two equal. Set
``decode_kernel.enabled = False`` to use the PyTorch path anyway.

Threads: the step runs on ``threads_for(model)`` threads from the OpenMP pool PyTorch uses
(the kernel links the same ``libgomp``): one for a model whose weights fit in half a core's
L2 cache (or under 8 MB where the process's other work shares the cores: ``share_cores``),
else PyTorch's count.
"""

from __future__ import annotations

import ctypes
import functools
import threading
import weakref
from pathlib import Path

import torch

from scratchllm.models import cpp_library
from scratchllm.models.cpp_library import Library

enabled = True  # False: always use the PyTorch path (gpt_decode.decode_token)

_f32 = ctypes.POINTER(ctypes.c_float)


class Layer(ctypes.Structure):
    _fields_ = [
        (name, _f32)
        for name in (
            "ln1_w", "ln1_b", "qkv_p", "qkv_b", "proj_p", "proj_b",
            "ln2_w", "ln2_b", "fc_p", "fc_b", "out_p", "out_b",
        )
    ] + [("ln1_eps", ctypes.c_float), ("ln2_eps", ctypes.c_float)]  # fmt: skip


class Model(ctypes.Structure):
    _fields_ = [
        *[(name, ctypes.c_int32) for name in ("n_layer", "C", "H", "D", "F", "V", "rms", "act")],
        ("layers", ctypes.POINTER(Layer)),
        *[(name, _f32) for name in ("wte", "pos", "rope_cos", "rope_sin", "lnf_w", "lnf_b")],
        ("lnf_eps", ctypes.c_float),
        ("head", _f32),
    ]


class Step(ctypes.Structure):
    _fields_ = [
        ("B", ctypes.c_int32),
        ("T", ctypes.c_int32),
        ("n_threads", ctypes.c_int32),
        ("start", ctypes.c_int64),
        ("max_len", ctypes.c_int64),
        ("tokens", ctypes.c_void_p),
        ("tokens_stride", ctypes.c_int64),
        ("positions", ctypes.c_void_p),
        ("key_mask", ctypes.c_void_p),
        ("kv", ctypes.c_void_p),
        ("logits", ctypes.c_void_p),
        ("work", ctypes.c_void_p),
    ]


def _declare(lib: ctypes.CDLL) -> None:
    lib.decode_step.argtypes = [ctypes.POINTER(Model), ctypes.POINTER(Step)]
    lib.decode_step.restype = ctypes.c_int32
    lib.scratch_floats.argtypes = [
        ctypes.POINTER(Model),
        ctypes.c_int64,
        ctypes.c_int32,
        ctypes.c_int64,
    ]
    lib.scratch_floats.restype = ctypes.c_int64


library = Library(
    Path(__file__).with_name("decode_kernel.cpp"),
    "C++ decode step",
    "decoding uses the PyTorch path",
    _declare,
)
compiler = cpp_library.compiler
cache_dir = cpp_library.cache_dir


def load() -> ctypes.CDLL | None:
    """The compiled kernel (built on the first call of the process if not cached), or None
    when it cannot be built here; the reason is warned once and kept in ``failure()``."""
    return library.load()


def failure() -> str | None:
    """Why ``load()`` returned None, or None if it did not (or was not called yet)."""
    return library.failed


@functools.cache
def l2_cache_bytes(cpu_dir: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int | None:
    """One core's level-2 cache in bytes, as Linux's sysfs gives it, or None where it does
    not (another system, an unreadable entry)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    for index in sorted(cpu_dir.glob("index*")):
        try:
            if (index / "level").read_text().strip() != "2":
                continue
            size = (index / "size").read_text().strip()
            return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
        except (OSError, ValueError):
            continue
    return None


# Where the L2 size cannot be read: 2 MB, this project's reference machine's.
ASSUMED_L2_BYTES = 2 << 20


def one_thread_below() -> int:
    """Bytes of weights read per step (times the batch rows, a proxy for the work) under which
    the step runs on one thread: half of one core's L2 cache. Weights that fit there (with
    the cache and activations beside them) stream from it at every token, and a second
    thread would only add its barriers (five a layer), and on a busy machine the wait for
    it to be scheduled. Larger weights stream from L3 or memory on one core; on two, each
    core's share can stay in its own L2. On the reference machine (2 MB of L2 a core), a
    4 x 128 model (3.0 MB) decoded 1.56x as fast on two threads, a 4 x 96 one (1.7 MB)
    1.49x, and a 4 x 64 one (0.8 MB) 0.88x (``benchmarks/bench_decode_threads.py``)."""
    return (l2_cache_bytes() or ASSUMED_L2_BYTES) // 2


# Where other work in the process competes for the cores (``share_cores``): below this many
# bytes of weights, whatever the batch, one thread. A small model's step takes tens to
# hundreds of microseconds, and when a barrier's other thread is not running (a server's
# event loop has its core), it waits for it to be scheduled again: a 4 x 128 model served
# to one client streamed 720 tokens/s on two threads, 2,727 on one, and to eight clients
# in batches of up to eight 4,973 on two, 8,303 on one (benchmarks/bench_serve.py).
SHARED_ONE_THREAD_BELOW = 8 << 20

_this_thread = threading.local()


def share_cores(shared: bool = True) -> None:
    """Say that, on the calling thread, the decode step shares the cores with other work of
    the process (``serving.Engine`` says so on its worker): steps planned on this thread
    then keep models with weights under ``SHARED_ONE_THREAD_BELOW`` bytes to one thread, at
    any batch size. Per thread, like ``torch.set_num_threads``."""
    _this_thread.shared = shared


def threads_for(plan, batch_size: int) -> int:
    """Threads for the step: 1 for a model whose weights (times the batch rows) fit in half a
    core's L2 cache (``one_thread_below``), or whose weights are under
    ``SHARED_ONE_THREAD_BELOW`` where the cores are shared (``share_cores``); else
    PyTorch's intra-op count (``torch.set_num_threads``): more cores hold more of the
    weights in their caches, and a model larger than all of them is bound by memory
    bandwidth, which every core adds to."""
    weights = 4 * (plan.wte.numel() + sum(m.weight.numel() for ly in plan.layers for m in ly))
    if getattr(_this_thread, "shared", False):
        one = weights < SHARED_ONE_THREAD_BELOW
    else:
        one = weights * batch_size < one_thread_below()
    return 1 if one else torch.get_num_threads()


def _ptr(t: torch.Tensor | None):
    return None if t is None else ctypes.cast(t.data_ptr(), _f32)


# Tokens per kernel call when a call brings many (a prompt): bounds the scratch memory.
CHUNK_ROWS = 64

PANEL = 48  # output columns per panel of a packed matrix (decode_kernel.cpp's PANEL)


def pack(weight: torch.Tensor) -> torch.Tensor:
    """A Linear's weight ``[N, K]`` as the C++ step's panels, flat: ``N`` rounded up to 16
    with zero rows, cut into panels of ``PANEL`` output columns (the last one 16 or 32), each
    stored k-major ``[K, width]``, one after another (see ``matmul_panels`` in the source).

    >>> pack(torch.arange(6.0).view(1, 6)).view(6, 16)[:, 0].tolist()  # one panel, 16 wide
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    """
    N, K = weight.shape
    w = weight.detach()
    padded = -(-N // 16) * 16
    if padded != N:
        w = torch.cat([w, w.new_zeros(padded - N, K)])
    full = padded // PANEL * PANEL
    parts = [w[:full].reshape(-1, PANEL, K).transpose(1, 2).reshape(-1)]  # (panels, K, 48)
    if full < padded:
        parts.append(w[full:].t().reshape(-1))  # (K, 16 or 32)
    return torch.cat(parts)


def matrices(plan) -> list[torch.Tensor]:
    """The four matrices of every layer that the C++ step reads packed: qkv, attention proj,
    fc, mlp proj."""
    four = ("c_attn", "attn_proj", "c_fc", "mlp_proj")
    return [getattr(layer, name).weight for layer in plan.layers for name in four]


def versions(tensors: list[torch.Tensor]) -> list[int] | None:
    """The tensors' version counters, which in-place changes bump (``load_state_dict``,
    ``copy_``, a foreach optimizer step); None for inference tensors, which have none.
    torch's *fused* optimizers write parameters without bumping them: the project's
    ``training.optimizer.configure_optimizer`` bumps them after each step, and an optimizer
    built elsewhere with ``fused=True`` must do the same
    (``torch.autograd.graph.increment_version``) or decoding here keeps the old weights."""
    try:
        return [t._version for t in tensors]
    except RuntimeError:
        return None


# model -> (its matrices and their versions when packed, the packed matrices): another
# decode of the same weights reuses them. The same tensor objects at the same versions hold
# the same numbers; a swapped tensor (``assign=True``) is another object.
_packs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def packed_weights(plan) -> list[torch.Tensor]:
    """``matrices(plan)`` packed by ``pack``, kept per model while its weights stay the same
    (a copy as large as the blocks' weights: 42 MB for 6 x 384)."""
    flat = matrices(plan)
    now = versions(flat)
    cached = _packs.get(plan.model)
    if now is not None and cached is not None:
        (tensors, then), packed = cached
        if then == now and all(a is b for a, b in zip(tensors, flat)):
            return packed
    with torch.no_grad():
        packed = [pack(w) for w in flat]
    if now is not None:
        _packs[plan.model] = ((flat, now), packed)
    return packed


class KernelPlan:
    """The ctypes structures for one model, batch size and cache length, and the call."""

    def __init__(self, plan, batch_size: int, max_len: int, n_threads: int) -> None:
        lib = load()
        assert lib is not None
        self.fn = lib.decode_step
        self.keep: list[torch.Tensor] = []  # holds every tensor a pointer below points into

        def ptr(t: torch.Tensor | None):
            if t is None:
                return None
            t = t.detach()
            self.keep.append(t)
            return _ptr(t)

        layers = (Layer * len(plan.layers))()
        for dst, w in zip(layers, plan.layers):
            dst.ln1_w, dst.ln1_b = ptr(w.ln_1.weight), ptr(w.ln_1.bias)
            dst.qkv_b, dst.proj_b = ptr(w.c_attn.bias), ptr(w.attn_proj.bias)
            dst.ln2_w, dst.ln2_b = ptr(w.ln_2.weight), ptr(w.ln_2.bias)
            dst.fc_b, dst.out_b = ptr(w.c_fc.bias), ptr(w.mlp_proj.bias)
            dst.ln1_eps, dst.ln2_eps = w.ln_1.eps, w.ln_2.eps
        self.layers = layers
        # The matrices are read from a packed copy, which unlike the views above would not
        # see an in-place change of the weights: every call compares their versions.
        self.plan = plan
        self.matrices = matrices(plan)
        self.repack()
        V, C = plan.wte.shape
        F = plan.layers[0].c_fc.weight.shape[0]
        rope = plan.rope or (None, None)
        self.model = Model(
            n_layer=len(plan.layers), C=C, H=plan.n_head, D=plan.head_dim, F=F, V=V,
            rms=int(plan.ln_f.rms), act=("gelu", "gelu_tanh", "relu").index(plan.act),
            layers=layers, wte=ptr(plan.wte), pos=ptr(plan.pos_table),
            rope_cos=ptr(rope[0]), rope_sin=ptr(rope[1]), lnf_w=ptr(plan.ln_f.weight),
            lnf_b=ptr(plan.ln_f.bias), lnf_eps=plan.ln_f.eps, head=ptr(plan.head.weight),
        )  # fmt: skip
        self.V = V
        self.chunk = max(1, CHUNK_ROWS // batch_size)  # tokens per row and call
        rows = batch_size * self.chunk
        n_work = lib.scratch_floats(ctypes.byref(self.model), rows, n_threads, max_len)
        self.work = torch.empty(n_work, dtype=torch.float32)
        self.step = Step(B=batch_size, n_threads=n_threads, max_len=max_len)
        self.step.work = self.work.data_ptr()
        self.model_ref, self.step_ref = ctypes.byref(self.model), ctypes.byref(self.step)
        # What the pointers passed per call must point into (the C++ code trusts them).
        self.kv_shape = (len(plan.layers), 2, batch_size, plan.n_head, max_len, plan.head_dim)
        self.mask_shape = (batch_size, max_len)

    def repack(self) -> None:
        """Point the layers at the packed copy of the matrices as they are now."""
        self.packed = packed_weights(self.plan)
        for i, dst in enumerate(self.layers):
            dst.qkv_p, dst.proj_p, dst.fc_p, dst.out_p = map(_ptr, self.packed[4 * i : 4 * i + 4])
        self.versions = versions(self.matrices)

    def __call__(
        self,
        idx: torch.Tensor,
        kv: torch.Tensor,
        start: int,
        positions: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """Logits ``[B, T, V]`` for ``idx [B, T]`` written into slots ``start..start+T`` of
        the cache ``kv``, or None when a token id is outside the vocabulary. ``positions
        [B, T]`` and ``key_mask [B, max_len]`` (True = real) come with left padding."""
        s = self.step
        B, T = idx.shape
        if kv.shape != self.kv_shape or not kv.is_contiguous() or kv.dtype != torch.float32:
            raise ValueError(
                f"a cache of shape {tuple(kv.shape)} ({kv.dtype}) for a kernel made for "
                f"{self.kv_shape}: build the plan for this state"
            )
        if B != s.B or idx.dtype != torch.int64:
            raise ValueError(f"idx must be int64 ({s.B}, T), got {tuple(idx.shape)} {idx.dtype}")
        if idx.stride(1) != 1:
            idx = idx.contiguous()
        if self.versions is not None and versions(self.matrices) != self.versions:
            self.repack()  # the weights changed in place since they were packed
        if key_mask is not None:
            if key_mask.shape != self.mask_shape or not key_mask.is_contiguous():
                raise ValueError(f"key_mask must be a contiguous {self.mask_shape} bool tensor")
            if positions is None or positions.shape != (B, T) or positions.dtype != torch.int64:
                raise ValueError(f"positions must be int64 ({B}, {T}) with a key_mask")
            s.key_mask = key_mask.data_ptr()
        else:
            s.key_mask = None
        chunked = self.chunk < T  # a prompt longer than one call takes
        if chunked and (int(idx.min()) < 0 or int(idx.max()) >= self.V):
            return None  # checked before the first chunk writes into the cache
        logits = torch.empty(B, T, self.V)
        s.tokens_stride = idx.stride(0)
        s.kv = kv.data_ptr()
        for c0 in range(0, T, self.chunk):
            c1 = min(T, c0 + self.chunk)
            s.T, s.start = c1 - c0, start + c0
            s.tokens = idx[:, c0:].data_ptr()
            pos = None if positions is None else positions[:, c0:c1].contiguous()
            s.positions = None if pos is None else pos.data_ptr()
            # The kernel writes (B, c1 - c0, V) densely: straight into logits when that is
            # the whole of it or B is 1, else through a buffer.
            out = logits if c1 - c0 == T or B == 1 else torch.empty(B, c1 - c0, self.V)
            s.logits = out[:, c0 if out is logits else 0 :].data_ptr()
            rc = self.fn(self.model_ref, self.step_ref)
            if rc == 2:
                return None
            if rc != 0:
                raise RuntimeError(f"decode_step failed with code {rc} (start {start}, T {T})")
            if out is not logits:
                logits[:, c0:c1] = out
        return logits
