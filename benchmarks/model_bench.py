"""Image encoder and decoder cost at 1024 on this machine (issue: model family).

Prints seconds per frame, FLOPs per frame and achieved GFLOP/s as a fraction of the fp32 matmul
peak measured in the same run. Weights are synthetic (cost does not depend on their values).

    .venv/bin/python benchmarks/model_bench.py [--variants V ...] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from samurai.bench import count_flops, machine_summary, matmul_peak_gflops
from samurai.build import build_model


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@torch.inference_mode()
def bench_variant(variant: str, repeats: int, peak: float) -> list[str]:
    model = build_model(variant, None)
    size = model.image_size
    image = torch.randn(1, 3, size, size)
    feats = model.encode_image(image)
    pix = model.add_no_mem_embed(feats.vision_features)
    box = torch.tensor([[[320.0, 0.0], [554.7, 758.5]]])
    labels = torch.tensor([[2, 3]], dtype=torch.int32)

    def encoder() -> None:
        model.encode_image(image)

    def decoder() -> None:
        model.decode(pix, feats.high_res_features, point_coords=box, point_labels=labels)

    rows = []
    for name, fn in (("image encoder", encoder), ("prompt enc. + mask decoder", decoder)):
        flops = count_flops(fn)
        seconds = best_of(fn, repeats)
        gflops = flops / seconds / 1e9
        rows.append(
            f"| {variant} | {name} | {seconds:.3f} | {flops / 1e9:.1f} | {gflops:.0f} | "
            f"{gflops / peak:.2f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", nargs="+", default=["sam2.1_hiera_t", "sam2.1_hiera_b+"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    peak = matmul_peak_gflops(torch.float32)
    print(f"machine: {machine_summary()}")
    print(f"fp32 matmul peak (2048^3): {peak:.0f} GFLOP/s\n")
    print("| variant | part | s / frame | GFLOP / frame | GFLOP/s | fraction of matmul peak |")
    print("|---|---|---|---|---|---|")
    for variant in args.variants:
        for row in bench_variant(variant, args.repeats, peak):
            print(row, flush=True)


if __name__ == "__main__":
    main()
