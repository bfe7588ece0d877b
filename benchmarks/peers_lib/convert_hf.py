"""Convert an official-layout SAM 2.1 checkpoint to a Hugging Face ``Sam2VideoModel`` folder.

Runs in the HF virtual environment. The key mapping is HF's own: ``get_config`` and
``replace_keys`` are imported from transformers' ``convert_sam2_video_to_hf.py`` (the script
lives in the transformers repository, src/transformers/models/sam2_video/, and is not shipped
in the wheel; benchmarks/peers_setup.sh puts a copy next to the HF venv). Nothing is
re-implemented here: the model is loaded with ``strict=True`` and saved with save_pretrained.

    hf/bin/python convert_hf.py --script convert_sam2_video_to_hf.py --variant t \
        --ckpt sam2.1_hiera_t.pt --out hf-sam2.1_hiera_t
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peers_lib.common import HF_NAME


def load_hf_script(path: Path) -> types.ModuleType:
    """Import HF's conversion script; stub the download-only imports it does not need here."""
    for name in ("httpx", "huggingface_hub"):
        try:
            __import__(name)
        except ImportError:  # only used to fetch a test image / the original checkpoint
            stub = types.ModuleType(name)
            stub.hf_hub_download = None  # type: ignore[attr-defined]
            sys.modules[name] = stub
    spec = importlib.util.spec_from_file_location("convert_sam2_video_to_hf", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lists_for_tuples(hf: types.ModuleType) -> None:
    """Let the script's ``get_config`` pass tuples where newer config classes demand lists.

    The stored script (commit 09cb93d) writes ``window_positional_embedding_background_size=
    (14, 14)`` for B+, which transformers 5.25's strict config validation rejects (it wants
    ``list[int]``); the values are unchanged, only the container type.
    """
    cls = hf.Sam2HieraDetConfig

    def make(*a: object, **kw: object) -> object:
        return cls(*a, **{k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()})

    hf.Sam2HieraDetConfig = make


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--script", type=Path, required=True)
    p.add_argument("--variant", choices=sorted(HF_NAME), default="t")
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    hf = load_hf_script(args.script)
    from transformers import Sam2VideoModel

    _lists_for_tuples(hf)
    config = hf.get_config(HF_NAME[args.variant])
    state_dict = torch.load(args.ckpt, map_location="cpu", weights_only=True)["model"]
    state_dict = hf.replace_keys(state_dict, config)
    model = Sam2VideoModel(config).eval()
    model.load_state_dict(state_dict, strict=True)
    model.save_pretrained(args.out)
    print(f"converted {args.ckpt} -> {args.out} ({len(state_dict)} tensors, strict load)")


if __name__ == "__main__":
    main()
