"""oneDNN float32 GEMMs and the head-by-head attention built on them, against PyTorch's ops."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from samurai.bench import count_flops
from samurai.modeling import cpu_attention, gemm
from samurai.modeling.cpu_attention import scaled_dot_product_attention, softmax_attention
from samurai.modeling.gemm import linear, matmul_nt, onednn_supported, uses_onednn

needs_onednn = pytest.mark.skipif(not onednn_supported(), reason="PyTorch built without oneDNN")


@pytest.fixture
def forced_onednn(monkeypatch: pytest.MonkeyPatch) -> None:
    """oneDNN for every shape class, whichever backend this CPU measured faster."""
    monkeypatch.setenv(gemm.ENV_VAR, "1")


@needs_onednn
@pytest.mark.usefixtures("forced_onednn")
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


# tiles of 200 query rows x 1024 keys: n_k 300 in one key block, 2500 in three (the last one
# partial); with tiles of 64 query rows x 3200 keys: four row blocks (the last one partial)
@pytest.mark.parametrize("n_k", [300, 2500])
@pytest.mark.parametrize("query_rows", [4096, 64])
def test_softmax_attention_equals_sdpa(
    n_k: int, query_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpu_attention, "SCORE_ELEMENTS", 200 * 1024)
    monkeypatch.setattr(cpu_attention, "QUERY_ROWS", query_rows)
    torch.manual_seed(1)
    q = torch.randn(2, 3, 200, 32) * 2
    k = torch.randn(2, 3, n_k, 32) * 2
    v = torch.randn(2, 3, n_k, 16)
    want = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    with torch.no_grad():
        got = softmax_attention(q, k, v)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_softmax_attention_with_values_shared_by_heads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_attention, "SCORE_ELEMENTS", 64 * 100)  # blocks of 100 keys
    torch.manual_seed(2)
    q, k = torch.randn(1, 2, 64, 16), torch.randn(1, 2, 450, 16)
    values = torch.randn(1, 450, 8)
    want = F.scaled_dot_product_attention(
        q.double(), k.double(), values.double().unsqueeze(1).expand(1, 2, 450, 8)
    )
    with torch.no_grad():
        got = softmax_attention(q, k, values, shared_values=True)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", [400.0, -400.0])
def test_softmax_attention_survives_scores_beyond_float32_exponents(
    scale: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # rows whose base-2 scores reach +-(hundreds): 2^s alone over- or underflows float32, so the
    # rows are computed again with each row's maximum over all key blocks subtracted
    monkeypatch.setattr(cpu_attention, "SCORE_ELEMENTS", 64 * 128)  # blocks of 128 keys
    torch.manual_seed(4)
    q = torch.randn(1, 2, 64, 16)
    k = torch.randn(1, 2, 300, 16)
    # the extreme key in the last, partial key block
    q[0, 0, :8] = scale / 16**0.5 * k[0, 0, 250] / k[0, 0, 250].norm() ** 2 * 4
    v = torch.randn(1, 2, 300, 8)
    want = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    with torch.no_grad():
        got = softmax_attention(q, k, v)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_exp2_weights_normalise_to_softmax_on_both_paths() -> None:
    torch.manual_seed(5)
    q, k = torch.randn(3, 5, 8), torch.randn(3, 40, 8)
    for shift in (0.0, 400.0, -400.0):  # in range; overflowing; underflowing
        scores = q @ k.transpose(1, 2) + shift / 2
        weights, sums = cpu_attention.exp2_weights(
            torch.cat([q, torch.full((3, 5, 1), shift)], 2),
            torch.cat([k, torch.ones(3, 40, 1)], 2),
            0.5,
        )
        want = torch.softmax(scores.double() * (math.log(2) / 2), dim=-1)
        torch.testing.assert_close((weights / sums).double(), want, rtol=1e-5, atol=1e-6)


def test_attend_rows_over_key_blocks_on_both_paths() -> None:
    torch.manual_seed(9)
    q, k, v = torch.randn(5, 8), torch.randn(300, 8), torch.randn(300, 3)
    for shift in (0.0, 200.0, -200.0):  # in range; overflowing; underflowing
        scores = q @ k.t() + shift
        out = torch.empty(5, 3)
        cpu_attention.attend_rows(
            torch.cat([q, torch.full((5, 1), shift)], 1),
            torch.cat([k, torch.ones(300, 1)], 1),
            v,
            128,  # key blocks of 128, 128 and 44
            out=out,
        )
        want = torch.softmax(scores.double() * math.log(2), dim=-1) @ v.double()
        torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-6)


@needs_onednn
@pytest.mark.usefixtures("forced_onednn")
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
        scaled_dot_product_attention(q[:, :, :16], k[:, :, :16], v[:, :, :16])  # short: batched
    assert calls == [q.shape]
    want = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


# 3 windows x 2 heads: one window per batched GEMM, two (the last group partial), or all three
@pytest.mark.parametrize("score_elements", [2 * 49 * 49, 4 * 49 * 49, 1 << 23])
def test_batched_attention_equals_sdpa_on_window_views(
    score_elements: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpu_attention, "SCORE_ELEMENTS", score_elements)
    torch.manual_seed(7)
    qkv = torch.randn(3, 49, 3, 2, 16).permute(2, 0, 3, 1, 4) * 2  # Hiera's strided views
    q, k, v = qkv.unbind(0)
    want = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    with torch.no_grad():
        got = cpu_attention.batched_attention(q, k, v)
        pooled = cpu_attention.batched_attention(q[:, :, ::4], k, v)  # fewer queries than keys
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pooled.double(), want[:, :, ::4], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", [400.0, -400.0])
def test_batched_attention_survives_scores_beyond_float32_exponents(scale: float) -> None:
    torch.manual_seed(8)
    q, k, v = torch.randn(4, 2, 16, 8), torch.randn(4, 2, 16, 8), torch.randn(4, 2, 16, 8)
    q[1, 0, :4] = scale / 8**0.5 * k[1, 0, 0] / k[1, 0, 0].norm() ** 2 * 4
    want = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    with torch.no_grad():
        got = cpu_attention.batched_attention(q, k, v)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_attention_dispatch_leaves_other_dtypes_and_autograd_to_the_fused_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []
    monkeypatch.setattr(cpu_attention, "batched_attention", lambda *a: calls.append(a) or a[0])
    q = torch.randn(2, 2, 16, 8)
    with torch.no_grad():
        scaled_dot_product_attention(q, q, q)
        assert len(calls) == 1
        half = q.bfloat16()
        torch.testing.assert_close(
            scaled_dot_product_attention(half, half, half),
            F.scaled_dot_product_attention(half, half, half),
        )
    leaf = q.clone().requires_grad_()
    scaled_dot_product_attention(leaf, leaf, leaf).sum().backward()
    assert len(calls) == 1
    assert leaf.grad is not None


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


@needs_onednn
def test_off_switch_keeps_every_product_on_pytorch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(gemm.ENV_VAR, "0")
    with torch.no_grad():
        assert not uses_onednn(torch.randn(4, 512), torch.randn(512, 512))
        assert gemm.backend_choice() == dict.fromkeys(gemm.CALIBRATION_SHAPES, "aten")


def test_shape_classes() -> None:
    assert gemm.shape_class(96, 384) == "narrow"
    assert gemm.shape_class(256, 64) == "narrow"
    assert gemm.shape_class(384, 1536) == "wide"
    assert gemm.shape_class(256, 256) == "wide"


@needs_onednn
def test_measured_choice_is_cached_per_machine_and_read_back(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAMURAI_HOME", str(tmp_path))
    monkeypatch.delenv(gemm.ENV_VAR, raising=False)
    choice = gemm.backend_choice()
    entries = json.loads((tmp_path / gemm.CACHE_FILE).read_text())
    ((key, entry),) = entries.items()
    assert f"threads {torch.get_num_threads()}" in key and torch.__version__ in key
    for kind, seconds in entry["seconds"].items():  # the faster backend of each class won
        faster = "onednn" if seconds["onednn"] < seconds["aten"] else "aten"
        assert choice[kind] == faster, (kind, seconds)

    # a choice read from the cache (here the opposite of the measurement) is what runs
    flipped = {kind: choice[kind] == "aten" for kind in choice}
    entries[key]["onednn"] = flipped
    other_home = tmp_path / "other"
    other_home.mkdir()
    (other_home / gemm.CACHE_FILE).write_text(json.dumps(entries))
    monkeypatch.setenv("SAMURAI_HOME", str(other_home))
    narrow_w, wide_w = torch.randn(96, 64), torch.randn(512, 384)
    with torch.no_grad():
        assert uses_onednn(torch.randn(8, 64), narrow_w) == flipped["narrow"]
        assert uses_onednn(torch.randn(8, 384), wide_w) == flipped["wide"]
        q = torch.randn(1, 1, 8, 16)
        assert uses_onednn(q, q, kind="attention") == flipped["attention"]
        torch.testing.assert_close(linear(torch.randn(8, 384), wide_w).shape, (8, 512))


_RACING_CHILD = """
import json, os, sys, time
from samurai.modeling import gemm
measured = []
def noisy_measurement(repeats=3):
    # load elsewhere decides which backend looks faster: here the process id does
    measured.append(True)
    time.sleep(0.5)
    seconds = 1.0 if os.getpid() % 2 == 0 else 2.0
    return {k: {"onednn": seconds, "aten": 1.5} for k in gemm.CALIBRATION_SHAPES}
gemm.measure_backends = noisy_measurement
while time.time() < float(sys.argv[1]):
    time.sleep(0.001)
print(json.dumps({"choice": gemm.backend_choice(), "measured": bool(measured)}))
"""


@needs_onednn
def test_processes_starting_together_measure_once_and_agree(tmp_path) -> None:
    """A server's workers start at once with an empty cache: one measures (under a file lock),
    the others wait and read its choice, so every worker runs the same float sums."""
    env = {**os.environ, "SAMURAI_HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    env.pop(gemm.ENV_VAR, None)
    start = str(time.time() + 8.0)  # after every child has imported torch
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _RACING_CHILD, start], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    reports = [json.loads(child.communicate(timeout=120)[0]) for child in children]
    assert [r["measured"] for r in reports].count(True) == 1, reports
    assert all(r["choice"] == reports[0]["choice"] for r in reports), reports
    (entry,) = json.loads((tmp_path / gemm.CACHE_FILE).read_text()).values()
    assert {k: "onednn" if v else "aten" for k, v in entry["onednn"].items()} == reports[0][
        "choice"
    ]


def test_unreadable_cache_is_measured_again(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / gemm.CACHE_FILE).write_text("{not json")
    monkeypatch.setenv("SAMURAI_HOME", str(tmp_path))
    monkeypatch.delenv(gemm.ENV_VAR, raising=False)
    choice = gemm.backend_choice()
    assert set(choice) == set(gemm.CALIBRATION_SHAPES)
    assert set(choice.values()) <= {"onednn", "aten"}
    if onednn_supported():
        assert json.loads((tmp_path / gemm.CACHE_FILE).read_text())  # rewritten, valid
