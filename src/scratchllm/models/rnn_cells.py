"""Recurrent cells written out: the vanilla tanh RNN, the GRU and the LSTM, and a stack of them.

With ``x`` the input at one time step, ``h`` the hidden state (and ``c`` the LSTM's cell
state), ``σ`` the logistic sigmoid and ``⊙`` the elementwise product::

    RNN   h' = tanh(W_ih x + b_ih + W_hh h + b_hh)

    GRU   r  = σ(W_ir x + b_ir + W_hr h + b_hr)             reset gate
          z  = σ(W_iz x + b_iz + W_hz h + b_hz)             update gate
          n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))    candidate state
          h' = (1 - z) ⊙ n + z ⊙ h

    LSTM  i  = σ(W_ii x + b_ii + W_hi h + b_hi)             input gate
          f  = σ(W_if x + b_if + W_hf h + b_hf)             forget gate
          g  = tanh(W_ig x + b_ig + W_hg h + b_hg)          candidate cell
          o  = σ(W_io x + b_io + W_ho h + b_ho)             output gate
          c' = f ⊙ c + i ⊙ g
          h' = o ⊙ tanh(c')

These are PyTorch's equations, and ``Recurrent`` stores its parameters exactly as
``torch.nn.RNN/GRU/LSTM`` do, so a state dict copies over one to one in either direction::

    weight_ih_l{k}  (G*H, input)   the gates' input weights, stacked
    weight_hh_l{k}  (G*H, H)       the gates' hidden weights, stacked
    bias_ih_l{k}    (G*H,)         (absent when bias=False)
    bias_hh_l{k}    (G*H,)

with ``G`` gates stacked in torch's order: RNN 1, GRU 3 as ``(r, z, n)``, LSTM 4 as
``(i, f, g, o)``. The GRU keeps two biases for the candidate because ``b_hn`` sits inside
the reset gate's product.

**The loop over time is inherent** (step t needs h from step t - 1), but the input side is
not: each layer computes ``W_ih x + b_ih`` for all T steps in one matmul before its loop,
so a step costs one ``(B, H) @ (H, G*H)`` product and the gate arithmetic.

>>> rnn = Recurrent("gru", input_size=4, hidden_size=8, num_layers=2)
>>> out, (h,) = rnn(torch.randn(3, 5, 4))   # (B, T, input) -> (B, T, H), h: (L, B, H)
>>> tuple(out.shape), tuple(h.shape)
((3, 5, 8), (2, 3, 8))
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

# Gates per cell: how many H-wide blocks are stacked in each weight matrix.
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
_TORCH_CLASSES = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}
# Cells whose b_hh is a plain sum with the input side; the GRU's b_hn sits inside r ⊙ (...).
_FOLD_B_HH = ("rnn", "lstm")

State = tuple[torch.Tensor, ...]  # per layer: (h,) or, for the LSTM, (h, c); each (B, H)


def _plus_hidden(
    xw: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor | None
) -> torch.Tensor:
    """``xw + W_hh h + b_hh`` as one fused ``addmm`` when ``b_hh`` is already in ``xw``."""
    if b_hh is not None:
        xw = xw + b_hh
    return torch.addmm(xw, h, w_hh.t())


def rnn_cell(
    xw: torch.Tensor, state: State, w_hh: torch.Tensor, b_hh: torch.Tensor | None
) -> State:
    """One vanilla RNN step. ``xw = W_ih x + b_ih`` (B, H) is precomputed for the step
    (``Recurrent`` also adds ``b_hh`` into it once for all steps and passes None here)."""
    (h,) = state
    return (torch.tanh(_plus_hidden(xw, h, w_hh, b_hh)),)


def gru_cell(
    xw: torch.Tensor, state: State, w_hh: torch.Tensor, b_hh: torch.Tensor | None
) -> State:
    """One GRU step; ``xw`` (B, 3H) holds the input side of ``(r, z, n)``."""
    (h,) = state
    hw = F.linear(h, w_hh, b_hh)  # (B, 3H): the hidden side of (r, z, n)
    x_r, x_z, x_n = xw.chunk(3, dim=1)
    h_r, h_z, h_n = hw.chunk(3, dim=1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return ((1 - z) * n + z * h,)


def lstm_cell(
    xw: torch.Tensor, state: State, w_hh: torch.Tensor, b_hh: torch.Tensor | None
) -> State:
    """One LSTM step; ``xw`` (B, 4H) holds the input side of ``(i, f, g, o)``."""
    h, c = state
    gates = _plus_hidden(xw, h, w_hh, b_hh)  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


CELLS = {"rnn": rnn_cell, "gru": gru_cell, "lstm": lstm_cell}


class Recurrent(nn.Module):
    """A stack of ``num_layers`` recurrent layers of one cell type, batch first.

    ``forward(x, hx=None, mask=None)`` takes ``x (B, T, input_size)``, an optional start
    state ``hx`` (a tuple of ``(num_layers, B, H)`` tensors: ``(h,)``, or ``(h, c)`` for the
    LSTM; zeros when None) and an optional ``mask (B, T)``: where it is False the step is
    skipped, i.e. every layer's state is carried over unchanged (left padding then leaves
    no trace). It returns the top layer's outputs ``(B, T, H)`` and the final state.

    ``dropout`` acts on the outputs of every layer but the last, as in torch. With
    ``fast=True`` (no mask, more than one step) the same parameters run through torch's
    own RNN kernels, which loop over time in C++; the result is the same up to rounding.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        dropout: float = 0.0,
        fast: bool = False,
    ) -> None:
        super().__init__()
        if cell not in GATES:
            raise ValueError(f"unknown cell {cell!r}; choose one of {list(GATES)}")
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        self.input_size, self.bias, self.dropout, self.fast = input_size, bias, dropout, fast
        GH = GATES[cell] * hidden_size  # the gates' rows, stacked
        for k in range(num_layers):
            fan_in = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(GH, fan_in)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(GH, hidden_size)))
            if bias:
                self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(GH)))
                self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(GH)))
        self._torch_module: nn.Module | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's initialisation: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def layer_weights(self, k: int) -> tuple[torch.Tensor, ...]:
        """``(weight_ih, weight_hh, bias_ih, bias_hh)`` of layer ``k`` (biases None if off)."""
        get = lambda name: getattr(self, f"{name}_l{k}", None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    def zero_state(self, batch_size: int, like: torch.Tensor) -> State:
        """The all-zero start state: ``(h,)`` or ``(h, c)``, each ``(L, B, H)``."""
        shape = (self.num_layers, batch_size, self.hidden_size)
        n = 2 if self.cell == "lstm" else 1
        return tuple(like.new_zeros(shape) for _ in range(n))

    def forward(
        self,
        x: torch.Tensor,  # (B, T, input_size)
        hx: State | None = None,  # (h,) or (h, c), each (L, B, H)
        mask: torch.Tensor | None = None,  # (B, T) bool, False = skip the step
    ) -> tuple[torch.Tensor, State]:
        B, T, _ = x.shape
        if hx is None:
            hx = self.zero_state(B, x)
        # torch's kernels win by looping over time in C++; one step (token-by-token
        # decoding) gains nothing there and pays their call overhead, so it stays here.
        use_torch = self.fast and T > 1
        if use_torch and mask is not None and bool(mask.all()):
            mask = None  # nothing to skip: the fast kernels apply
        if use_torch and mask is None:
            return self._forward_torch(x, hx)
        step = CELLS[self.cell]
        keep = None if mask is None else mask.to(device=x.device, dtype=torch.bool)[:, :, None]
        final = []  # per layer: its last state
        inp = x
        for k in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self.layer_weights(k)
            xw = F.linear(inp, w_ih, b_ih)  # (B, T, G*H): the input side of every step at once
            if b_hh is not None and self.cell in _FOLD_B_HH:
                xw, b_hh = xw + b_hh, None  # b_hh is the same every step: add it once here
            state = tuple(s[k] for s in hx)  # (h,) or (h, c), each (B, H)
            outs = []
            # unbind, not xw[:, t]: the backward of T slices would build T full-size
            # gradients of xw; unbind's backward stacks the T pieces once.
            for t, xw_t in enumerate(xw.unbind(1)):
                new = step(xw_t, state, w_hh, b_hh)
                if keep is not None:  # a skipped step carries the old state through
                    new = tuple(torch.where(keep[:, t], n, s) for n, s in zip(new, state))
                state = new
                outs.append(state[0])
            final.append(state)
            inp = torch.stack(outs, dim=1) if outs else x.new_zeros(B, 0, self.hidden_size)
            if self.dropout and self.training and k < self.num_layers - 1:
                inp = F.dropout(inp, self.dropout, training=True)
        new_hx = tuple(torch.stack(parts) for parts in zip(*final))  # each (L, B, H)
        return inp, new_hx

    def _forward_torch(self, x: torch.Tensor, hx: State) -> tuple[torch.Tensor, State]:
        """The same stack through ``torch.nn.RNN/GRU/LSTM``, fed our parameters."""
        from torch.func import functional_call

        module = self.torch_module()
        module.train(self.training)
        state = hx if self.cell == "lstm" else hx[0]
        with warnings.catch_warnings():
            # On CUDA torch prefers one contiguous weight buffer; ours are separate tensors.
            warnings.filterwarnings("ignore", message=".*contiguous chunk of memory.*")
            out, new = functional_call(module, dict(self.named_parameters()), (x, state))
        return out, (tuple(new) if self.cell == "lstm" else (new,))

    def torch_module(self) -> nn.Module:
        """An equivalent, parameter-free (meta) ``torch.nn.RNN/GRU/LSTM`` with our layout."""
        if self._torch_module is None:
            cls = getattr(nn, _TORCH_CLASSES[self.cell])
            module = cls(
                self.input_size,
                self.hidden_size,
                num_layers=self.num_layers,
                bias=self.bias,
                batch_first=True,
                dropout=self.dropout if self.num_layers > 1 else 0.0,  # torch warns otherwise
                device="meta",
            )
            # Kept out of the module tree: it owns no parameters and must not be saved.
            object.__setattr__(self, "_torch_module", module)
        return self._torch_module

    def extra_repr(self) -> str:
        return (
            f"{self.cell}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"bias={self.bias}, dropout={self.dropout}, fast={self.fast}"
        )
