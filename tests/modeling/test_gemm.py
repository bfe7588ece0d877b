"""oneDNN float32 GEMMs and the head-by-head attention built on them, against PyTorch's ops."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from samurai.bench import count_flops
from samurai.modeling import cpu_attention
from samurai.modeling.cpu_attention import scaled_dot_product_attention, softmax_attention
from samurai.modeling.gemm import linear, matmul_nt, onednn_available, uses_onednn

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="PyTorch built without oneDNN")


@needs_onednn
def test_float32_cpu_without_autograd_goes_through_onednn() -> None:
    x, w = torch.randn(4, 3), torch.randn(5, 3)
    with torch.no_grad():
        assert uses_onednn(x, w)
        assert not uses_onednn(x.double(), w.double())
        assert not uses_onednn(x.bfloat16(), w.bfloat16())
    assert not uses_onednn(x, w)  # autograd on: oneDNN's op has no backward


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "row-padded"])
def test_linear_equals_f_linear_for_every_weight_layout(layout: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 37, 48)
    base = torch.randn(64, 96)
    weight = {
        "contiguous": base[:, :48].contiguous(),
        "transposed": base[:, :48].t().contiguous().t(),
        "row-padded": base[:, :48],
    }[layout]
    bias = torch.randn(64)
    with torch.no_grad():
        got = linear(x, weight, bias)
        want = F.linear(x.double(), weight.double(), bias.double())
        assert got.dtype == torch.float32
        assert got.shape == (2, 37, 64)
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            matmul_nt(x, weight).double(), want - bias.double(), rtol=1e-5, atol=1e-5
        )
        assert linear(x[:, :0], weight, bias).shape == (2, 0, 64)


def test_linear_keeps_autograd() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    w = torch.randn(2, 4, requires_grad=True)
    linear(x, w).sum().backward()
    torch.testing.assert_close(x.grad, w.sum(0).expand(3, 4))


@pytest.mark.parametrize("n_k", [300, 2500])  # one block; several blocks with a partial last one
def test_softmax_attention_equals_sdpa(n_k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_attention, "SCORE_ELEMENTS", 200 * 1024)
    torch.manual_seed(1)
    q = torch.randn(2, 3, 200, 32) * 2
    k = torch.randn(2, 3, n_k, 32) * 2
    v = torch.randn(2, 3, n_k, 16)
    want = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    with torch.no_grad():
        got = softmax_attention(q, k, v)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_softmax_attention_with_values_shared_by_heads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_attention, "SCORE_ELEMENTS", 64 * 100)
    torch.manual_seed(2)
    q, k = torch.randn(1, 2, 64, 16), torch.randn(1, 2, 450, 16)
    values = torch.randn(1, 450, 8)
    want = F.scaled_dot_product_attention(
        q.double(), k.double(), values.double().unsqueeze(1).expand(1, 2, 450, 8)
    )
    with torch.no_grad():
        got = softmax_attention(q, k, values, shared_values=True)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_attention_dispatch_takes_head_by_head_path_for_long_sequences(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(3)
    # strided views straight out of a fused qkv projection, as in Hiera
    qkv = torch.randn(1, 1024, 3, 2, 32).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    calls = []

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return softmax_attention(*args, **kwargs)

    monkeypatch.setattr(cpu_attention, "softmax_attention", spy)
    with torch.no_grad():
        got = scaled_dot_product_attention(q, k, v)
        scaled_dot_product_attention(q[:, :, :16], k[:, :, :16], v[:, :, :16])  # short: fused
    assert calls == [q.shape]
    want = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_flop_count_includes_onednn_linears() -> None:
    layer = torch.nn.Linear(48, 64)
    x = torch.randn(10, 48)
    with torch.no_grad():
        assert count_flops(lambda: linear(x, layer.weight, layer.bias)) == 2 * 10 * 48 * 64


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_linear_applies_the_activation_in_the_gemm(activation: str) -> None:
    torch.manual_seed(4)
    x, w, b = torch.randn(33, 40), torch.randn(24, 40), torch.randn(24)
    want = {"relu": F.relu, "gelu": F.gelu}[activation](F.linear(x, w, b))
    with torch.no_grad():
        torch.testing.assert_close(linear(x, w, b, activation), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(linear(x, w, b, activation), want)  # autograd on: PyTorch ops


def test_linear_refuses_unknown_activations() -> None:
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        linear(torch.randn(2, 3), torch.randn(4, 3), activation="tanh")
