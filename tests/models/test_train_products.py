"""The training kernels' matrix products (``gemm`` in ``models/train_kernel.cpp``, through
``train_kernel.mm``) against ``torch.mm``: as close to the float64 product as PyTorch's own,
for both layouts of the left matrix and shapes that leave partial tiles and K blocks; the
same bits on any thread count; and ``torch.mm`` itself wherever ``gemm`` does not take the
operands or ``products()`` says ``"torch"``."""

import pytest
import torch

from scratchllm.models import train_kernel
from scratchllm.models.train_kernel import mm, mm_t


@pytest.fixture
def cpp(monkeypatch):
    assert train_kernel.library.load() is not None, train_kernel.library.failed
    monkeypatch.setattr(train_kernel, "matmul_impl", "cpp")


def ran_gemm(fn) -> bool:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return any(e.key == "scratchllm::matmul" for e in prof.key_averages())


# M, K, N: rows of 6 and fewer, columns of 64 and the 16-wide ends, K across GEMM_KC (256)
SHAPES = [(1, 1, 16), (5, 3, 32), (6, 16, 48), (13, 64, 80), (64, 257, 112), (100, 600, 64),
          (768, 128, 384)]  # fmt: skip


def left(M: int, K: int, layout: str, g: torch.Generator) -> torch.Tensor:
    """An (M, K) matrix in one of the layouts gemm reads: row-major, the transpose of a
    row-major matrix, and each as a slice of a wider one (the head's padded logits)."""
    if layout == "row-major":
        return torch.randn(M, K, generator=g)
    if layout == "transposed":
        return torch.randn(K, M, generator=g).t()
    if layout == "column slice":
        return torch.randn(M, K + 7, generator=g)[:, 3 : 3 + K]
    return torch.randn(K, M + 5, generator=g)[:, :M].t()  # a slice, transposed


@pytest.mark.parametrize("M, K, N", SHAPES)
@pytest.mark.parametrize("layout", ["row-major", "transposed", "column slice", "slice transposed"])
def test_gemm_is_as_close_to_the_exact_product_as_torch_mm(cpp, M, K, N, layout):
    g = torch.Generator().manual_seed(M * 1000 + K)
    a = left(M, K, layout, g)
    b = torch.randn(K, N, generator=g)
    assert ran_gemm(lambda: mm(a, b))
    exact = a.double() @ b.double()
    ours, theirs = (mm(a, b) - exact).abs().max(), (torch.mm(a, b) - exact).abs().max()
    assert ours <= 1.25 * theirs + 1e-6, (ours, theirs)


def test_gemm_gives_the_same_bits_on_any_thread_count(cpp):
    a, b = torch.randn(101, 300), torch.randn(300, 96)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = mm(a, b)
        torch.set_num_threads(3)  # more threads than cores: other splits of the rows
        three = mm(a, b)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, three)


def test_an_empty_inner_dimension_gives_zeros(cpp):
    out = mm(torch.randn(7, 0), torch.randn(0, 32))
    assert out.shape == (7, 32) and not out.any()


def test_operands_gemm_does_not_take_go_to_torch_mm(cpp):
    a = torch.randn(20, 40)
    cases = [
        (a, torch.randn(40, 30)),  # N not a multiple of 16
        (a, torch.randn(32, 40).t()),  # B not row-major
        (torch.randn(20, 80)[:, ::2], torch.randn(40, 32)),  # A neither layout
    ]
    for x, y in cases:
        assert not ran_gemm(lambda x=x, y=y: mm(x, y))
        assert torch.equal(mm(x, y), torch.mm(x, y))


def test_mm_t_is_a_linear_layers_product(cpp):
    x, w = torch.randn(30, 48), torch.randn(64, 48)
    assert ran_gemm(lambda: mm_t(x, w))
    torch.testing.assert_close(mm_t(x, w), x @ w.t(), rtol=1e-5, atol=1e-5)
    odd = torch.randn(65, 48)  # a vocabulary's 65 rows: torch's product
    assert not ran_gemm(lambda: mm_t(x, odd))
    assert torch.equal(mm_t(x, odd), x @ odd.t())


@pytest.mark.parametrize("rows, cols", [(16, 1), (16, 16), (32, 37), (48, 384), (1536, 384)])
def test_transposed_is_w_t_contiguous_bit_for_bit(rows, cols):
    """The 16 x 16 register transpose, with the columns past the last whole block."""
    assert train_kernel.library.load() is not None, train_kernel.library.failed
    w = torch.randn(rows, cols)
    out = train_kernel.transposed(w)
    assert out.shape == (cols, rows) and out.is_contiguous()
    assert torch.equal(out, w.t().contiguous())


@pytest.mark.parametrize("rows", [1, 37, 65])
def test_a_weight_of_any_rows_transposes_with_zeros_to_whole_vectors(rows):
    """The head's weight, whose rows are the vocabulary: columns padded to 16 with zeros."""
    assert train_kernel.library.load() is not None, train_kernel.library.failed
    w = torch.randn(rows, 40)
    out = train_kernel._transpose(w)
    padded = -(-rows // 16) * 16
    assert out.shape == (40, padded) and out.is_contiguous()
    assert torch.equal(out[:, :rows], w.t()) and not out[:, rows:].any()


def test_transposed_refuses_what_the_kernel_cannot_take():
    for w in (torch.randn(15, 16), torch.randn(16, 32).t(), torch.randn(16, 16).double()):
        with pytest.raises(ValueError, match="multiple of 16 rows"):
            train_kernel.transposed(w)


def test_mm_t_of_a_non_contiguous_weight(cpp):
    x, w = torch.randn(30, 48), torch.randn(48, 64).t()  # [64, 48], not row-major
    assert ran_gemm(lambda: mm_t(x, w))
    torch.testing.assert_close(mm_t(x, w), x @ w.t(), rtol=1e-5, atol=1e-5)


def test_products_follows_matmul_impl(monkeypatch):
    a, b = torch.randn(12, 20), torch.randn(20, 32)
    monkeypatch.setattr(train_kernel, "matmul_impl", "torch")
    assert train_kernel.products() == "torch" and not ran_gemm(lambda: mm(a, b))
    assert torch.equal(mm(a, b), torch.mm(a, b))
    monkeypatch.setattr(train_kernel, "matmul_impl", "cpp")
    assert train_kernel.products() == "cpp" and ran_gemm(lambda: mm(a, b))
    monkeypatch.setattr(train_kernel, "matmul_impl", "mkl")
    with pytest.raises(ValueError, match="'cpp', 'torch' or None"):
        train_kernel.products()
    monkeypatch.setattr(train_kernel, "matmul_impl", None)
    assert train_kernel.products() in ("cpp", "torch")
    assert train_kernel.products() == train_kernel.products()  # the machine decides, once
