"""Ours vs the official SAMURAI code vs HF transformers' Sam2VideoModel, in one run (issue #21).

Every configuration runs in a fresh child process of its own peer's virtual environment
(benchmarks/peers_setup.sh makes them, outside the project), configurations alternate and the
whole list is repeated (reversed on odd repeats, so no configuration is always first). Per
run: wall seconds between frames yielded by the peer's propagate loop (mask at video resolution
included), the steady-state mean (frames >= 8: memory bank full), the child's peak RSS
(``ru_maxrss`` via ``wait4``) and per frame the chosen low-resolution mask, which is compared
across peers on the same pixels (the official-style 1024 x 1024 input of the bedroom frames).

Modes:
  compare  ours SAMURAI and plain SAM 2.1 (float32, bfloat16; the allocator setting off too),
           the official code (SAMURAI and plain SAM 2.1), HF (plain SAM 2.1), per variant and
           thread count. Plain SAM 2.1 runs use the upstream object-present threshold 0 (HF
           cannot change it; the SAMURAI fork's default is -1), SAMURAI runs the fork's -1.
  sizes    ours at image_size 256 / 512 / 1024, SAMURAI_ONEDNN=0 / 1 / auto (the shipped
           measured choice), per thread count.
  load     ours, the official code and HF with and without a background model process
           (peers_lib/load.py: Hiera-T image encoder in a loop, 2 threads) on the same cores;
           --env-variant OMP_WAIT_POLICY=PASSIVE adds every peer with that setting too.

    .venv/bin/python benchmarks/peers.py compare [--variants t,b+] [--threads 1,2]
        [--frames 20] [--repeats 3] [--plot] [--out out/peers/NAME]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers_lib import report
from peers_lib.run import ROOT, BackgroundLoad, Config, run_config

REFERENCE = Path(os.environ.get("SAMURAI_REFERENCE", ROOT.parent / "shared" / "reference"))
PEERS = Path(os.environ.get("SAMURAI_PEERS", ROOT.parent / "peers"))


def plan(args: argparse.Namespace) -> list[Config]:
    peers = set(args.peers.split(","))
    dtypes = args.dtypes.split(",")
    variants = args.variants.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    out: list[Config] = []
    for v in variants:
        for t in threads:
            base = Config("ours", variant=v, threads=t)
            if args.mode == "compare":
                for mode in ("samurai", "sam2"):
                    thr = 0.0 if mode == "sam2" else None
                    m = replace(base, mode=mode, obj_threshold=thr)
                    if "ours" in peers:
                        out += [replace(m, dtype=d) for d in dtypes]
                        if mode == "sam2" and args.allocator:
                            out += [replace(m, dtype=d, malloc_tuning="0") for d in dtypes]
                    if "official" in peers:
                        out.append(replace(m, peer="official"))
                    if "hf" in peers and mode == "sam2":
                        out.append(replace(m, peer="hf"))
            elif args.mode == "sizes":
                for size in (int(s) for s in args.sizes.split(",")):
                    for onednn in args.onednn.split(","):
                        out += [
                            replace(base, image_size=size, onednn=onednn, dtype=d) for d in dtypes
                        ]
            else:  # load
                for peer in ("ours", "official", "hf"):
                    if peer not in peers:
                        continue
                    mode = "sam2" if peer == "hf" else "samurai"
                    cfg = replace(
                        base, peer=peer, mode=mode, obj_threshold=0.0 if peer == "hf" else None
                    )
                    out += [cfg, replace(cfg, load=True)]
                    for env in args.env_variant:  # settings against oversubscription
                        pairs = tuple(tuple(kv.split("=", 1)) for kv in env.split(","))
                        out += [replace(cfg, env=pairs), replace(cfg, env=pairs, load=True)]
    return out


def check_peers(configs: list[Config]) -> None:
    need = {c.peer for c in configs} - {"ours"}
    missing = [
        p for p in ("official", "hf") if p in need and not (PEERS / p / "bin" / "python").exists()
    ]
    if missing or not (PEERS / "weights").is_dir():
        raise SystemExit(
            f"peers not set up in {PEERS} ({missing or 'weights'}): run benchmarks/peers_setup.sh"
        )


def frames_folder(out: Path, n: int) -> Path:
    """The first ``n`` bedroom frames linked into a folder (the official code reads a folder)."""
    src = sorted((REFERENCE / "frames" / "bedroom").glob("*.jpg"))[:n]
    if len(src) < n:
        raise SystemExit(f"only {len(src)} frames in {REFERENCE / 'frames' / 'bedroom'}")
    folder = out / "frames"
    folder.mkdir(parents=True, exist_ok=True)
    for f in src:
        link = folder / f.name
        if not link.exists():
            link.symlink_to(f.resolve())
    return folder


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        from samurai.bench import machine_summary

        info["summary"] = machine_summary()
    except ImportError:
        pass
    with contextlib.suppress(OSError):
        info["meminfo"] = Path("/proc/meminfo").read_text().splitlines()[0]
    return info


def sizes_table(entries: list[dict[str, Any]]) -> str:
    idx = {
        (
            e["config"]["image_size"],
            e["config"]["onednn"],
            e["config"]["threads"],
            e["config"]["dtype"],
        ): e
        for e in entries
    }
    lines = [
        "| size | oneDNN | threads | dtype | s/frame | vs 1024 | pixels vs 1024 "
        "| oneDNN on / off |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (size, onednn, threads, dtype), e in sorted(idx.items()):
        sec = report.seconds(e)
        full = idx.get((1024, onednn, threads, dtype))
        other = idx.get((size, "0" if onednn == "1" else "1", threads, dtype))
        rel = f"{sec / report.seconds(full):.2f}" if sec and full and report.seconds(full) else "-"
        on_off = "-"
        if onednn == "1" and other and sec and report.seconds(other):
            r = sec / report.seconds(other)
            on_off = f"{r:.2f}" + (" (oneDNN SLOWER)" if r > 1 else "")
        lines.append(
            f"| {size} | {onednn} | {threads} | {dtype} | {sec:.2f} | {rel} | "
            f"{(size / 1024) ** 2:.3f} | {on_off} |"
            if sec
            else f"| {size} | {onednn} | {threads} | {dtype} | failed | | | |"
        )
    return "\n".join(lines) + "\n"


def load_table(entries: list[dict[str, Any]]) -> str:
    lines = [
        "| configuration | threads | s/frame alone | s/frame under load | slowdown |",
        "|---|---|---|---|---|",
    ]
    for e in entries:
        c = e["config"]
        if c["load"]:
            continue
        loaded = next((x for x in entries if x["config"] == {**c, "load": True}), None)
        a, b = report.seconds(e), report.seconds(loaded) if loaded else None
        lines.append(
            f"| {e['label']} | {c['threads']} | {report._num(a, 2)} | "
            f"{report._num(b, 2)} | {f'{b / a:.2f}x' if a and b else '-'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("mode", choices=("compare", "sizes", "load"), nargs="?", default="compare")
    p.add_argument("--variants", default=None, help="t,b+ (compare) / t (sizes, load)")
    p.add_argument("--threads", default=None, help="1,2 (compare, sizes) / 2 (load)")
    p.add_argument("--peers", default="ours,official,hf")
    p.add_argument("--dtypes", default=None, help="float32,bfloat16 (compare) / float32 (others)")
    p.add_argument("--sizes", default="256,512,1024")
    p.add_argument(
        "--onednn", default="0,1,auto", help="sizes: SAMURAI_ONEDNN values (auto: as shipped)"
    )
    p.add_argument(
        "--no-allocator",
        dest="allocator",
        action="store_false",
        help="compare: skip ours with SAMURAI_MALLOC_TUNING=0",
    )
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=float, default=3600, help="seconds per child process")
    p.add_argument("--load-threads", type=int, default=2)
    p.add_argument(
        "--env-variant",
        action="append",
        default=[],
        metavar="K=V[,K=V]",
        help="load: also run every peer with these settings (e.g. OMP_WAIT_POLICY=PASSIVE)",
    )
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--plot", action="store_true")
    p.add_argument(
        "--summarize", type=Path, metavar="DIR", help="only re-summarize DIR/rows.json (any mode)"
    )
    args = p.parse_args()
    if args.summarize:
        out = args.summarize.resolve()
        info_file = out / "info.json"
        info = json.loads(info_file.read_text()) if info_file.is_file() else {}
        mode = info.get("mode", args.mode)
        finish(out, json.loads((out / "rows.json").read_text()), info, mode, plot=args.plot)
        return
    args.variants = args.variants or ("t,b+" if args.mode == "compare" else "t")
    args.threads = args.threads or ("2" if args.mode == "load" else "1,2")
    args.dtypes = args.dtypes or ("float32,bfloat16" if args.mode == "compare" else "float32")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = (args.out or ROOT / "out" / "peers" / f"{args.mode}-{stamp}").resolve()
    configs = plan(args)
    check_peers(configs)
    frames = frames_folder(out, args.frames)
    info = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": machine(),
        "started_utc": stamp,
        "loadavg_start": os.getloadavg(),
        "configs": len(configs),
        "mode": args.mode,
    }
    print(
        f"{info['machine'].get('summary', info['machine']['platform'])}; "
        f"{len(configs)} configurations x {args.repeats} repeats, {args.frames} frames -> {out}",
        flush=True,
    )
    (out / "info.json").write_text(json.dumps(info, indent=1))
    rows: list[dict[str, Any]] = []
    for rep in range(args.repeats):
        for cfg in configs if rep % 2 == 0 else configs[::-1]:
            run_out = out / "runs" / cfg.label / f"r{rep}"
            if cfg.load:
                with BackgroundLoad(
                    PEERS, run_out, threads=args.load_threads, max_seconds=args.timeout
                ) as bg:
                    row = run_config(cfg, frames, run_out, PEERS, timeout=args.timeout)
                row["load_report"] = bg.report()
            else:
                row = run_config(cfg, frames, run_out, PEERS, timeout=args.timeout)
            row["repeat"] = rep
            row["loadavg_after"] = os.getloadavg()
            rows.append(row)
            sec = row.get("steady_mean_s")
            status = (
                f"FAILED rc={row['returncode']}"
                if row.get("returncode") != 0
                else (
                    f"steady {sec:.2f} s/frame"
                    if sec is not None
                    else f"frames {' '.join(f'{s:.2f}' for s in row['seconds'][1:])} s"
                )
            )
            print(
                f"[{rep}] {cfg.label}: {status}, "
                f"peak RSS {report._num(row.get('rss_mib'), 0)} MiB, "
                f"loadavg {row['loadavg_after'][0]:.1f}",
                flush=True,
            )
            (out / "rows.json").write_text(json.dumps(rows, indent=1))
    info.update(
        finished_utc=time.strftime("%Y%m%d-%H%M%S", time.gmtime()), loadavg_end=os.getloadavg()
    )
    (out / "info.json").write_text(json.dumps(info, indent=1))
    finish(out, rows, info, args.mode, plot=args.plot)


def finish(out: Path, rows: list[dict[str, Any]], info: dict[str, Any], mode: str, *, plot: bool):
    """Summary, mask check, ratios: table.md, summary.json and (``plot``) peers.png in ``out``."""
    entries = report.summarize(rows)
    checks = report.compare_masks(rows)
    rat = report.ratios(entries)
    text = report.markdown(entries, checks, rat)
    if mode == "sizes":
        text += "\n" + sizes_table(entries)
    if mode == "load":
        text += "\n" + load_table(entries)
    (out / "summary.json").write_text(
        json.dumps(
            {"info": info, "entries": entries, "mask_checks": checks, "ratios": rat, "rows": rows},
            indent=1,
        )
    )
    (out / "table.md").write_text(f"`{info.get('command')}`\n\n{info.get('machine')}\n\n{text}")
    print("\n" + text)
    if plot:
        title = f"{mode}: {info.get('machine', {}).get('summary', '')}"
        report.plot(entries, out / "peers.png", title)
        print(f"plot: {out / 'peers.png'}")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
