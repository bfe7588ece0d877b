"""Readers for the tracking benchmarks' folder layouts (as pytracking's dataset classes read them).

Every reader checks its root folder when built; ``check(names)`` then checks only the sequences
that will run (a partial download of a benchmark is fine) and raises one ``ValueError`` line
naming every missing one. Sequences are loaded lazily with ``load(name)`` or by iterating.
Sequence names are pytracking's, so result files are interchangeable with published raw results.
"""

from __future__ import annotations

import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from samurai.eval.results import load_boxes, parse_boxes

LASOT_ATTRIBUTES: dict[str, str] = {
    "IV": "Illumination Variation", "POC": "Partial Occlusion", "DEF": "Deformation",
    "MB": "Motion Blur", "CM": "Camera Motion", "ROT": "Rotation", "BC": "Background Clutter",
    "VC": "Viewpoint Change", "SV": "Scale Variation", "FOC": "Full Occlusion",
    "FM": "Fast Motion", "OV": "Out-of-View", "LR": "Low Resolution", "ARC": "Aspect Ratio Change",
}  # fmt: skip
"""The 14 LaSOT attributes, in the column order of the toolkit's ``annos/att/<seq>.txt`` files."""

# LaSOT protocol II test split, 280 sequences (pytracking lasotdataset.py, got10k lasot.json)
_LASOT_TEST = """
airplane:1,9,13,15 basketball:1,6,7,11 bear:2,4,6,17 bicycle:2,7,9,18 bird:2,3,15,17
boat:3,4,12,17 book:3,10,11,19 bottle:1,12,14,18 bus:2,5,17,19 car:2,6,9,17 cat:1,3,18,20
cattle:2,7,12,13 chameleon:3,6,11,20 coin:3,6,7,18 crab:3,6,12,18 crocodile:3,4,10,14
cup:1,4,7,17 deer:4,8,10,14 dog:1,7,15,19 drone:2,7,13,15 electricfan:1,10,18,20
elephant:1,12,16,18 flag:2,3,5,9 fox:2,3,5,20 frog:3,4,9,20 gametarget:1,2,7,13
gecko:1,5,16,19 giraffe:2,10,13,15 goldfish:3,7,8,10 gorilla:4,6,9,13 guitar:3,8,10,16
hand:2,3,9,16 hat:1,2,5,18 helmet:5,11,13,19 hippo:1,7,9,20 horse:1,4,12,15
kangaroo:2,5,11,14 kite:4,6,10,15 leopard:1,7,16,20 licenseplate:6,12,13,15 lion:1,5,12,20
lizard:1,3,6,13 microphone:2,6,14,16 monkey:3,4,9,17 motorcycle:1,3,9,18 mouse:1,8,9,17
person:1,5,10,12 pig:2,10,13,18 pool:3,7,12,15 rabbit:10,13,17,19 racing:10,15,16,20
robot:1,5,8,19 rubicCube:1,6,14,19 sepia:6,8,13,16 shark:2,3,5,6 sheep:3,5,7,9
skateboard:3,8,16,19 spider:14,16,18,20 squirrel:8,11,13,19 surfboard:4,5,8,12
swing:10,14,17,20 tank:6,9,14,16 tiger:4,6,12,18 train:1,7,11,20 truck:3,6,7,16
turtle:5,8,9,16 umbrella:2,9,17,19 volleyball:1,13,18,19 yoyo:7,15,17,19 zebra:10,14,16,17
"""
LASOT_TEST_SEQUENCES: tuple[str, ...] = tuple(
    f"{group.split(':')[0]}-{index}" for group in _LASOT_TEST.split()
    for index in group.split(":")[1].split(",")
)  # fmt: skip
_LASOT_EXT_CLASSES = (
    "atv", "badminton", "cosplay", "dancingshoe", "footbag", "frisbee", "jianzi", "lantern", "misc",
    "opossum", "paddle", "raccoon", "rhino", "skatingshoe", "wingsuit",
)  # fmt: skip
LASOT_EXT_SEQUENCES: tuple[str, ...] = tuple(
    f"{name}-{index}" for name in _LASOT_EXT_CLASSES for index in range(1, 11)
)
"""LaSOT extension subset (IJCV 2020): 15 classes x 10 sequences."""

# OTB100 sequences starting mid-folder, and Tiger1's skipped first frames (pytracking otbdataset.py)
_OTB_START = {"BlurCar1": 247, "BlurCar3": 3, "BlurCar4": 18, "David": 300}
_OTB_INIT_OMIT = {"Tiger1": 5}
# UAV123 sub-sequences cut from one video start mid-video (configSeqs, pytracking uavdataset.py)
_UAV_START = {
    "bird1_2": 775, "bird1_3": 1573, "car1_2": 751, "car1_3": 1627, "car6_2": 487, "car6_3": 1807,
    "car6_4": 2953, "car6_5": 3925, "car8_2": 1357, "car16_2": 415, "group1_2": 1333,
    "group1_3": 2515, "group1_4": 3925, "group2_2": 907, "group2_3": 1771, "group3_2": 1567,
    "group3_3": 2827, "group3_4": 4369, "person2_2": 1189, "person4_2": 1501, "person5_2": 877,
    "person7_2": 1249, "person8_2": 1075, "person12_2": 601, "person14_2": 847,
    "person14_3": 1813, "person17_2": 1501, "person19_2": 1243, "person19_3": 2791,
    "truck4_2": 577, "uav1_2": 1555, "uav1_3": 2473,
}  # fmt: skip

AttributeSpec = str | Path | Mapping[str, Iterable[str]]


@dataclass(frozen=True, eq=False)
class Sequence:
    """One benchmark sequence.

    Attributes:
        name: sequence name (result files are named after it).
        frames: frame image paths in order.
        ground_truth: (N, 4) float64 xywh boxes in pixels, one per frame; (1, 4) for test sets
            whose annotations are withheld (GOT-10k test, TrackingNet test).
        absent: (N,) bool, True where the target is not visible (LaSOT full occlusion or out of
            view, GOT-10k cover 0, UAV123 NaN rows), or None when the benchmark has no such label.
        attributes: short attribute names of the sequence (e.g. LaSOT "FOC").
        image_size: (width, height) when the dataset states it (GOT-10k ``meta_info.ini``).
    """

    name: str
    frames: tuple[Path, ...]
    ground_truth: NDArray[np.float64]
    absent: NDArray[np.bool_] | None = None
    attributes: frozenset[str] = field(default_factory=frozenset)
    image_size: tuple[int, int] | None = None

    @property
    def init_box(self) -> NDArray[np.float64]:
        """(4,) xywh box of the first frame, the tracker's prompt."""
        box: NDArray[np.float64] = self.ground_truth[0]
        return box

    @property
    def has_ground_truth(self) -> bool:
        """Whether every frame is annotated (False for withheld test annotations)."""
        return len(self.ground_truth) == len(self.frames)


class Dataset(Protocol):
    """A benchmark: named sequences loaded on demand. ``name`` is the benchmark key used by
    ``metrics.CONVENTIONS`` and ``ResultFolder.for_benchmark``."""

    name: str

    @property
    def sequence_names(self) -> list[str]: ...

    def load(self, name: str) -> Sequence: ...

    def check(self, names: Iterable[str] | None = None) -> None:
        """Raise one ValueError line naming every sequence of ``names`` (None: all) whose files
        are missing."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Sequence]: ...


def _require(path: Path, label: str) -> Path:
    if not path.exists():
        raise ValueError(f"{label}: missing {path}")
    return path


def _read_flags(path: Path) -> NDArray[np.bool_]:
    values = [v for v in re.split(r"[,\s]+", path.read_text().strip()) if v]
    return np.array([float(v) != 0 for v in values], dtype=bool)


def _numbered_images(folder: Path) -> dict[int, Path]:
    images = {}
    for name in os.listdir(folder):
        stem, ext = os.path.splitext(name)
        if ext.lower() in (".jpg", ".jpeg", ".png") and stem.isdigit():
            images[int(stem)] = folder / name
    return images


def _sorted_images(folder: Path) -> tuple[Path, ...]:
    images = _numbered_images(folder)
    return tuple(images[number] for number in sorted(images))


class _Attributes:
    """Attributes per sequence from a mapping, a pytracking ``*_attributes.json`` file, or a LaSOT
    toolkit ``annos/att`` folder of ``<seq>.txt`` files holding 14 comma-separated 0/1 flags
    (read when a sequence is loaded, so only the sequences that run need theirs)."""

    def __init__(self, spec: AttributeSpec | None) -> None:
        self.folder: Path | None = None
        self._known: dict[str, frozenset[str]] = {}
        if spec is None:
            return
        if isinstance(spec, Mapping):
            self._known = {name: frozenset(values) for name, values in spec.items()}
        elif Path(spec).is_file():
            data = json.loads(Path(spec).read_text())
            self._known = {k: frozenset(v) for k, v in data.items() if not k.startswith("att_name")}
        else:
            self.folder = _require(Path(spec), "attributes")

    def missing(self, name: str) -> Path | None:
        """The attribute file ``name`` lacks (folder specs only)."""
        if self.folder is None or (self.folder / f"{name}.txt").is_file():
            return None
        return self.folder / f"{name}.txt"

    def get(self, name: str) -> frozenset[str]:
        if self.folder is None:
            return self._known.get(name, frozenset())
        path = _require(self.folder / f"{name}.txt", "attributes")
        flags = _read_flags(path)
        if len(flags) != len(LASOT_ATTRIBUTES):
            raise ValueError(f"attributes: {path} has {len(flags)} flags, expected 14")
        return frozenset(a for a, on in zip(LASOT_ATTRIBUTES, flags, strict=True) if on)


class _Reader(ABC):
    """Common part of the readers: a name list, iteration, lookup."""

    name = "generic"

    def __init__(self, names: Iterable[str]) -> None:
        self._names = list(names)

    _label = "generic"
    root: Path

    @property
    def sequence_names(self) -> list[str]:
        return list(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[Sequence]:
        return (self.load(name) for name in self._names)

    @abstractmethod
    def load(self, name: str) -> Sequence:
        """One sequence by name, its ground truth read from disk."""

    def check(self, names: Iterable[str] | None = None) -> None:
        """Raise one ValueError line naming every sequence of ``names`` (None: all) whose files
        are missing, each as its first missing path relative to the dataset folder."""
        wanted = self._names if names is None else list(names)
        for name in wanted:
            self._check_name(name)
        missing = [(name, path) for name in wanted if (path := self._missing(name)) is not None]
        if missing:
            listed = ", ".join(_relative(path, self.root) for _, path in missing)
            raise ValueError(
                f"{self._label}: missing {len(missing)} of {len(wanted)} sequence(s) under "
                f"{self.root}: {listed}"
            )

    def _missing(self, name: str) -> Path | None:
        """The first file or folder sequence ``name`` needs that is absent, else None."""
        return None

    def _check_name(self, name: str) -> None:
        if name not in self._names:
            raise ValueError(f"{self.name}: unknown sequence {name!r}")

    def _checked(self, name: str) -> None:
        """A known sequence with its files (for ``load``)."""
        self._check_name(name)
        path = self._missing(name)
        if path is not None:
            raise ValueError(f"{self._label}: missing {path}")


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


class LaSOT(_Reader):
    """LaSOT: ``<root>/<class>/<class>-<k>/{img/%08d.jpg, groundtruth.txt, full_occlusion.txt,
    out_of_view.txt}``. ``split="test"`` is the 280-sequence protocol II set; ``"all"`` every
    sequence found. A frame is absent when fully occluded or out of view (pytracking
    ``target_visible``)."""

    name = "lasot"
    _label = "LaSOT"

    def __init__(
        self, root: str | Path, *, split: str = "test", attributes: AttributeSpec | None = None
    ) -> None:
        self.root = _require(Path(root), self._label)
        if split == "test":
            names: Iterable[str] = LASOT_TEST_SEQUENCES
        elif split == "all":
            names = sorted(path.parent.name for path in self.root.glob("*/*/groundtruth.txt"))
        else:
            raise ValueError(f"{self._label}: unknown split {split!r}, expected 'test' or 'all'")
        self._init_names(names, attributes)

    def _init_names(self, names: Iterable[str], attributes: AttributeSpec | None) -> None:
        super().__init__(names)
        if not self._names:
            raise ValueError(f"{self._label}: no sequences under {self.root}")
        self._attributes = _Attributes(attributes)

    def _missing(self, name: str) -> Path | None:
        folder = self._folder(name)
        if not folder.is_dir():
            return folder
        for part in ("img", "groundtruth.txt", "full_occlusion.txt", "out_of_view.txt"):
            if not (folder / part).exists():
                return folder / part
        return self._attributes.missing(name)

    def _folder(self, name: str) -> Path:
        return self.root / name.rsplit("-", 1)[0] / name

    def load(self, name: str) -> Sequence:
        self._checked(name)
        folder = self._folder(name)
        boxes = load_boxes(folder / "groundtruth.txt")
        absent = _read_flags(folder / "full_occlusion.txt") | _read_flags(
            folder / "out_of_view.txt"
        )
        if len(absent) != len(boxes):
            raise ValueError(f"{self._label}: {name} has {len(boxes)} boxes, {len(absent)} flags")
        frames = tuple(folder / "img" / f"{i:08d}.jpg" for i in range(1, len(boxes) + 1))
        return Sequence(name, frames, boxes, absent, self._attributes.get(name))


class LaSOTExt(LaSOT):
    """LaSOT extension subset (150 sequences), same layout as LaSOT."""

    name = "lasot_ext"
    _label = "LaSOT_ext"

    def __init__(self, root: str | Path, *, attributes: AttributeSpec | None = None) -> None:
        self.root = _require(Path(root), self._label)
        self._init_names(LASOT_EXT_SEQUENCES, attributes)


class GOT10k(_Reader):
    """GOT-10k val or test: ``<root>/<split>/{list.txt, <seq>/{%08d.jpg, groundtruth.txt,
    absence.label, cover.label, meta_info.ini}}`` (``root`` may also be the split folder).

    Test sequences carry only the first box. A frame is absent where ``cover.label`` is 0 (the
    toolkit keeps ``cover > 0``), else where ``absence.label`` is 1.
    """

    name = "got10k"

    def __init__(self, root: str | Path, *, split: str = "val") -> None:
        if split not in ("val", "test"):
            raise ValueError(f"GOT-10k: unknown split {split!r}, expected 'val' or 'test'")
        root = Path(root)
        self.split = split
        self.base = root if (root / "list.txt").is_file() else root / split
        self.root = self.base
        listing = _require(self.base / "list.txt", "GOT-10k").read_text().split()
        super().__init__(listing)

    _label = "GOT-10k"

    def _missing(self, name: str) -> Path | None:
        path = self.base / name / "groundtruth.txt"
        return None if path.is_file() else path

    def load(self, name: str) -> Sequence:
        self._checked(name)
        folder = self.base / name
        frames = _sorted_images(folder)
        boxes = load_boxes(folder / "groundtruth.txt")
        if self.split == "val" and len(boxes) != len(frames):
            raise ValueError(f"GOT-10k: {name} has {len(frames)} frames, {len(boxes)} boxes")
        absent = None
        if (folder / "cover.label").is_file():
            absent = ~_read_flags(folder / "cover.label")
        elif (folder / "absence.label").is_file():
            absent = _read_flags(folder / "absence.label")
        if absent is not None and len(absent) != len(frames):
            raise ValueError(f"GOT-10k: {name} has {len(frames)} frames, {len(absent)} labels")
        return Sequence(name, frames, boxes[: len(frames)], absent, image_size=_resolution(folder))


def _resolution(folder: Path) -> tuple[int, int] | None:
    meta = folder / "meta_info.ini"
    if not meta.is_file():
        return None
    match = re.search(r"resolution:\s*\((\d+),\s*(\d+)\)", meta.read_text())
    return (int(match.group(1)), int(match.group(2))) if match else None


class OTB(_Reader):
    """OTB100: ``<root>/<Seq>/{img/%04d.jpg, groundtruth_rect[.k].txt}``.

    ``groundtruth_rect.k.txt`` gives sequence ``<Seq>_k`` (Jogging_1, Skating2_2, Human4_2; empty
    files are skipped); BlurCar1/3/4 and David start mid-folder and Tiger1 skips 5 frames, as in
    pytracking ``otbdataset.py``.
    """

    name = "otb"

    def __init__(self, root: str | Path, *, attributes: AttributeSpec | None = None) -> None:
        self.root = _require(Path(root), "OTB")
        self._annotations: dict[str, Path] = {}
        self._unannotated: dict[str, Path] = {}
        for folder in sorted(p for p in self.root.iterdir() if (p / "img").is_dir()):
            files = sorted(folder.glob("groundtruth_rect*.txt"))
            if not files:  # a sequence whose annotation is missing: check() names it
                self._unannotated[folder.name] = folder / "groundtruth_rect.txt"
            for path in files:
                if path.read_text().strip():
                    suffix = path.name[len("groundtruth_rect") : -len(".txt")]
                    self._annotations[folder.name + suffix.replace(".", "_")] = path
        if not self._annotations and not self._unannotated:
            raise ValueError(f"OTB: no <sequence>/img folders under {self.root}")
        super().__init__(sorted([*self._annotations, *self._unannotated]))
        self._attributes = _Attributes(attributes)

    _label = "OTB"

    def _missing(self, name: str) -> Path | None:
        return self._unannotated.get(name) or self._attributes.missing(name)

    def load(self, name: str) -> Sequence:
        self._checked(name)
        annotation = self._annotations[name]
        omit = _OTB_INIT_OMIT.get(name, 0)
        boxes = load_boxes(annotation)[omit:]
        start = _OTB_START.get(name, 1) + omit
        images = _numbered_images(annotation.parent / "img")
        missing = [i for i in range(start, start + len(boxes)) if i not in images]
        if missing:
            raise ValueError(
                f"OTB: {name} misses frame {missing[0]} in {annotation.parent / 'img'}"
            )
        frames = tuple(images[i] for i in range(start, start + len(boxes)))
        return Sequence(name, frames, boxes, attributes=self._attributes.get(name))


class NfS(_Reader):
    """Need for Speed, 30 fps. Either pytracking's layout ``<root>/{anno/nfs_<seq>.txt,
    sequences/<seq>/%05d.jpg}`` or the original ``<root>/<seq>/30/{<seq>.txt, <seq>/*.jpg}`` whose
    240 fps annotation rows (``id xmin ymin xmax ymax ...``) are subsampled as the got10k NfS reader
    does. Names are ``nfs_<seq>``."""

    name = "nfs"

    def __init__(self, root: str | Path) -> None:
        self.root = _require(Path(root), "NfS")
        self._pytracking_layout = (self.root / "anno").is_dir()
        if self._pytracking_layout:
            stems = sorted(p.stem[len("nfs_") :] for p in (self.root / "anno").glob("nfs_*.txt"))
        else:
            stems = sorted(
                p.stem for p in self.root.glob("*/30/*.txt") if p.stem == p.parents[1].name
            )
        if not stems:
            raise ValueError(f"NfS: no anno/nfs_<seq>.txt or <seq>/30/<seq>.txt under {self.root}")
        super().__init__(f"nfs_{stem}" for stem in stems)

    _label = "NfS"

    def _missing(self, name: str) -> Path | None:
        folder = self._frames_folder(name[len("nfs_") :])
        return None if folder.is_dir() else folder

    def _frames_folder(self, stem: str) -> Path:
        if self._pytracking_layout:
            return self.root / "sequences" / stem
        return self.root / stem / "30" / stem

    def load(self, name: str) -> Sequence:
        self._checked(name)
        stem = name[len("nfs_") :]
        frames = _sorted_images(self._frames_folder(stem))
        if self._pytracking_layout:
            boxes = load_boxes(self.root / "anno" / f"{name}.txt")
        else:
            boxes = _nfs_raw_boxes(self.root / stem / "30" / f"{stem}.txt", len(frames))
            frames = frames[: len(boxes)]
        if len(frames) < len(boxes):
            raise ValueError(f"NfS: {name} has {len(frames)} frames, {len(boxes)} boxes")
        return Sequence(name, frames[: len(boxes)], boxes)


def _nfs_raw_boxes(path: Path, num_frames: int) -> NDArray[np.float64]:
    rows = [line.split()[1:5] for line in path.read_text().splitlines() if line.strip()]
    corners = parse_boxes("\n".join(",".join(row) for row in rows))
    boxes = np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1)
    if len(boxes) != num_frames and abs(len(boxes) / max(num_frames, 1) - 8) < 1:
        boxes = boxes[::8]  # 240 fps annotations for 30 fps frames
    if abs(len(boxes) - num_frames) == 1:
        boxes = boxes[: min(len(boxes), num_frames)]
    return boxes


class UAV123(_Reader):
    """UAV123 (or UAV20L): ``<root>/{anno/<version>/<seq>.txt, data_seq/UAV123/<folder>/%06d.jpg}``.
    Split sequences (``bird1_2``) share their video folder and start mid-video. Rows of NaN mark an
    absent target. Names are ``uav_<seq>``."""

    name = "uav"

    def __init__(
        self, root: str | Path, *, version: str = "UAV123", attributes: AttributeSpec | None = None
    ) -> None:
        self.root = _require(Path(root), "UAV123")
        self.version = version
        anno = _require(self.root / "anno" / version, "UAV123")
        stems = sorted(p.stem for p in anno.glob("*.txt"))
        if not stems:
            raise ValueError(f"UAV123: no annotation files in {anno}")
        super().__init__(f"uav_{stem}" for stem in stems)
        self._attributes = _Attributes(attributes)

    _label = "UAV123"

    def _missing(self, name: str) -> Path | None:
        folder = self._folder(name[len("uav_") :])
        return (None if folder.is_dir() else folder) or self._attributes.missing(name)

    def _folder(self, stem: str) -> Path:
        return self.root / "data_seq" / "UAV123" / re.sub(r"_\d+$", "", stem)

    def load(self, name: str) -> Sequence:
        self._checked(name)
        stem = name[len("uav_") :]
        boxes = load_boxes(self.root / "anno" / self.version / f"{stem}.txt")
        start = _UAV_START.get(stem, 1) if self.version == "UAV123" else 1
        frames = tuple(
            self._folder(stem) / f"{i:06d}.jpg" for i in range(start, start + len(boxes))
        )
        absent = np.asarray(np.isnan(boxes).any(axis=1), dtype=bool)
        return Sequence(name, frames, boxes, absent, self._attributes.get(name))


class TrackingNet(_Reader):
    """TrackingNet: ``<root>/<chunk>/{anno/<seq>.txt, frames/<seq>/<i>.jpg}``; the TEST chunk's
    annotations hold only the first box (the server evaluates the rest)."""

    name = "trackingnet"

    def __init__(self, root: str | Path, *, chunks: Iterable[str] = ("TEST",)) -> None:
        self.root = _require(Path(root), "TrackingNet")
        self._chunk_of: dict[str, str] = {}
        for chunk in chunks:
            anno = _require(self.root / chunk / "anno", "TrackingNet")
            _require(self.root / chunk / "frames", "TrackingNet")
            for path in sorted(anno.glob("*.txt")):
                self._chunk_of[path.stem] = chunk
        super().__init__(self._chunk_of)

    _label = "TrackingNet"

    def _missing(self, name: str) -> Path | None:
        folder = self.root / self._chunk_of[name] / "frames" / name
        return None if folder.is_dir() else folder

    def load(self, name: str) -> Sequence:
        self._checked(name)
        chunk = self.root / self._chunk_of[name]
        frames = _sorted_images(chunk / "frames" / name)
        boxes = load_boxes(chunk / "anno" / f"{name}.txt")
        return Sequence(name, frames, boxes[: len(frames)])
