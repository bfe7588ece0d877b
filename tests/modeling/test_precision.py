"""Split-bfloat16 layers: float32 mode is exactly nn.Linear; bfloat16 mode is close to it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import samurai.modeling.precision as precision
from samurai.build import build_model
from samurai.modeling.gemm import uses_onednn
from samurai.modeling.precision import (
    SPLIT_MIN_FEATURES,
    Linear,
    attention_bfloat16,
    set_compute_dtype,
    split_bfloat16,
)


def _layer(in_f: int = 384, out_f: int = 512, seed: int = 0) -> Linear:
    torch.manual_seed(seed)
    layer = Linear(in_f, out_f)
    with torch.no_grad():
        layer.weight.normal_(0, 0.5)
        layer.bias.normal_(0, 1.0)
    return layer


@pytest.fixture
def split_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """The split path even where oneDNN's float32 GEMM would take over (x86-64 CPUs)."""
    monkeypatch.setattr(precision, "uses_onednn", lambda *tensors: False)


def test_float32_mode_is_nn_linear() -> None:
    layer = _layer()
    plain = nn.Linear(384, 512)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(7, 384)
    assert torch.equal(layer(x), plain(x))  # autograd on: PyTorch's own op
    layer.set_compute_dtype(torch.bfloat16)
    layer.set_compute_dtype(torch.float32)
    assert layer.compute_dtype == torch.float32 and torch.equal(layer(x), plain(x))
    with torch.no_grad():  # oneDNN on x86-64: same product, another summation order
        torch.testing.assert_close(layer(x), plain(x), rtol=1e-5, atol=1e-5)


def test_bfloat16_mode_runs_float32_where_onednn_is_faster() -> None:
    layer = _layer()
    x = torch.randn(7, 384)
    with torch.no_grad():
        exact = layer(x)
        layer.set_compute_dtype(torch.bfloat16)
        fast = layer(x)
        onednn = uses_onednn(x, layer.weight)
    if onednn:
        assert torch.equal(fast, exact) and layer.split_weight is None
    else:
        assert not torch.equal(fast, exact) and layer.split_weight is not None


def test_split_keeps_weights_to_16_bits() -> None:
    w = torch.randn(64, 96)
    pair = split_bfloat16(w)
    assert pair.dtype == torch.bfloat16 and pair.shape == (64, 192)
    rebuilt = pair[:, :96].float() + pair[:, 96:].float()
    assert (rebuilt - w).abs().max() <= w.abs().max() * 2**-16
    assert (pair[:, :96].float() - w).abs().max() > w.abs().max() * 2**-10  # hi alone is bf16


@pytest.mark.usefixtures("split_everywhere")
def test_bfloat16_mode_removes_the_systematic_weight_error() -> None:
    layer = _layer()
    x = torch.randn(4096, 384) + 1.0  # activations with a shared component, as in a network
    exact = layer(x)
    plain = F.linear(x.bfloat16(), layer.weight.bfloat16(), layer.bias.bfloat16()).float()
    layer.set_compute_dtype(torch.bfloat16)
    split = layer(x)
    assert split.dtype == torch.float32
    # The mean over tokens exposes the error every token shares (rounded weights and bias).
    plain_bias = (plain - exact).mean(0).abs().max()
    split_bias = (split - exact).mean(0).abs().max()
    assert split_bias < plain_bias / 8, (split_bias, plain_bias)
    assert (split - exact).abs().max() < 4e-3 * exact.abs().max()


@pytest.mark.usefixtures("split_everywhere")
def test_row_chunks_give_the_same_result_as_one_gemm(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = _layer(96, 288)
    layer.set_compute_dtype(torch.bfloat16)
    x = torch.randn(2, 50, 96)
    with torch.no_grad():
        whole = layer(x)
        monkeypatch.setattr(precision, "SPLIT_CHUNK_ROWS", 7)  # 15 chunks, the last one short
        chunked = layer(x)
    assert chunked.shape == (2, 50, 288) and torch.equal(chunked, whole)
    with torch.enable_grad():  # autograd takes the unchunked path, with the same numbers
        assert torch.equal(layer(x), whole)
    with torch.no_grad():
        assert layer(torch.empty(0, 96)).shape == (0, 288)
    layer.bias = None
    with torch.no_grad():
        xb = x.bfloat16()
        assert layer.split_weight is not None
        expected = F.linear(torch.cat([xb, xb], dim=-1), layer.split_weight).float()
        assert torch.equal(layer(x), expected)


@pytest.mark.usefixtures("split_everywhere")
def test_narrow_layers_stay_float32() -> None:
    narrow = _layer(SPLIT_MIN_FEATURES // 2, 512)
    narrow.set_compute_dtype(torch.bfloat16)
    assert narrow.compute_dtype == torch.float32
    narrow(torch.randn(3, SPLIT_MIN_FEATURES // 2))
    assert narrow.split_weight is None


@pytest.mark.usefixtures("split_everywhere")
def test_state_dict_keys_unchanged_and_reload_resplits() -> None:
    layer = _layer()
    layer.set_compute_dtype(torch.bfloat16)
    layer(torch.randn(2, 384))
    assert layer.split_weight is not None
    assert set(layer.state_dict()) == {"weight", "bias"}
    other = _layer(seed=1)
    layer.load_state_dict(other.state_dict())
    x = torch.randn(16, 384)
    other.set_compute_dtype(torch.bfloat16)
    assert torch.equal(layer(x), other(x))


def test_unsupported_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported compute dtype"):
        _layer().set_compute_dtype(torch.float16)


@pytest.mark.parametrize("shared", [False, True])
def test_attention_bfloat16_matches_float32(shared: bool) -> None:
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 100, 32), torch.randn(2, 3, 300, 32)
    v = torch.randn(2, 300, 16) if shared else torch.randn(2, 3, 300, 16)
    full_v = v.unsqueeze(1).expand(2, 3, 300, 16) if shared else v
    exact = F.scaled_dot_product_attention(q, k, full_v)
    out = attention_bfloat16(q, k, v, shared_values=shared)
    assert out.dtype == torch.float32 and out.shape == exact.shape
    assert (out - exact).abs().max() < 0.03


@pytest.mark.usefixtures("split_everywhere")
def test_model_switches_back_to_bit_exact_float32() -> None:
    model = build_model("sam2.1_hiera_t", None, image_size=256).eval()
    x = torch.randn(1, 3, 256, 256)
    with torch.inference_mode():
        before = model.image_encoder(x).backbone_fpn[-1]
        model.set_compute_dtype(torch.bfloat16)
        assert model.compute_dtype == torch.bfloat16
        fast = model.image_encoder(x).backbone_fpn[-1]
        model.set_compute_dtype(torch.float32)
        after = model.image_encoder(x).backbone_fpn[-1]
    assert torch.equal(before, after)
    assert not torch.equal(before, fast)
    assert torch.allclose(before, fast, rtol=0.05, atol=0.05)


def test_set_compute_dtype_reaches_only_modules_that_have_one() -> None:
    block = nn.Sequential(_layer(), nn.ReLU(), nn.Linear(512, 512))
    set_compute_dtype(block, torch.bfloat16)
    assert block[0].compute_dtype == torch.bfloat16
