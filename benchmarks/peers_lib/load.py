"""Background load for the under-load mode: ours Hiera-T image encoder at 1024, in a loop.

One "other model process" on the shared cores: it encodes the same frame again and again
with ``--threads`` threads until SIGTERM or ``--seconds`` have passed, and rewrites
``--report`` (passes, seconds, passes per second) after every pass, so the runner can state
how much work the load did beside each measured run.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=3600)
    p.add_argument("--report", type=Path, required=True)
    args = p.parse_args()
    from peers_lib.common import set_threads

    set_threads(args.threads)
    import torch

    from samurai.build import build_model, read_state_dict

    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    model = build_model("sam2.1_hiera_t", read_state_dict(args.ckpt))
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    passes = 0
    with torch.inference_mode():
        while not stop and time.perf_counter() - start < args.seconds:
            model.encode_image(x)
            passes += 1
            sec = time.perf_counter() - start
            tmp = args.report.with_suffix(".tmp")
            tmp.write_text(json.dumps({"passes": passes, "seconds": sec, "per_s": passes / sec}))
            tmp.replace(args.report)


if __name__ == "__main__":
    main()
