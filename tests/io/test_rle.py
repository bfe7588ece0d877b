"""COCO RLE: byte-equal to pycocotools (when installed), round trips, edge sizes, errors."""

from __future__ import annotations

import numpy as np
import pytest

from samurai.io import rle


def random_masks() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    masks = []
    for height, width in [(1, 1), (1, 7), (7, 1), (3, 5), (17, 31), (64, 64), (120, 161)]:
        for p in (0.02, 0.5, 0.97):
            masks.append(rng.random((height, width)) < p)
    blob = np.zeros((300, 400), dtype=bool)
    blob[10:250, 33:390] = True
    blob[0, 0] = blob[299, 399] = True
    masks.append(blob)
    return masks


EDGE_CASES = {
    "empty": np.zeros((5, 6), dtype=bool),
    "full": np.ones((5, 6), dtype=bool),
    "first_pixel": np.pad(np.ones((1, 1), dtype=bool), ((0, 4), (0, 5))),
    "last_pixel": np.pad(np.ones((1, 1), dtype=bool), ((4, 0), (5, 0))),
    "middle_pixel": np.pad(np.ones((1, 1), dtype=bool), ((2, 2), (3, 2))),
    "odd": np.arange(7 * 9).reshape(7, 9) % 3 == 0,
    "zero_rows": np.zeros((0, 3), dtype=bool),
}


def test_known_strings() -> None:
    """Strings pycocotools 2.0.11 produces, so the format is checked even without it."""
    mask = np.zeros((4, 5), dtype=bool)
    mask[1:3, 1:4] = True
    assert rle.encode(mask) == {"size": [4, 5], "counts": "5220003"}
    blob = random_masks()[-1]
    encoded = rle.encode(blob)["counts"]
    assert encoded.startswith("01ee9_7W\\F000") and encoded.endswith("0]m2aH")
    assert rle.encode(np.zeros((0, 3), dtype=bool))["counts"] == "0"


@pytest.mark.parametrize("mask", [*random_masks(), *EDGE_CASES.values()])
def test_round_trip(mask: np.ndarray) -> None:
    encoded = rle.encode(mask)
    assert isinstance(encoded["counts"], str)
    decoded = rle.decode(encoded)
    assert decoded.dtype == np.bool_ and decoded.shape == mask.shape
    np.testing.assert_array_equal(decoded, mask)
    assert rle.area(encoded) == int(mask.sum())
    np.testing.assert_array_equal(
        rle.decode({**encoded, "counts": encoded["counts"].encode()}), mask
    )


# pycocotools 2.0.x calls __array__ in a way numpy 2 deprecates.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("mask", [*random_masks(), *EDGE_CASES.values()])
def test_equal_to_pycocotools(mask: np.ndarray) -> None:
    coco = pytest.importorskip("pycocotools.mask")
    reference = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
    ours = rle.encode(mask)
    assert ours["size"] == list(reference["size"])
    assert ours["counts"] == reference["counts"].decode("ascii")
    if mask.size:
        assert rle.area(ours) == coco.area(reference)
        np.testing.assert_array_equal(rle.to_bbox(ours), coco.toBbox(reference))
        np.testing.assert_array_equal(rle.decode(ours), coco.decode(reference).astype(bool))
    uncompressed = {"size": list(mask.shape), "counts": rle.counts_from_string(ours["counts"])}
    frpy = coco.frPyObjects(
        {**uncompressed, "counts": uncompressed["counts"].tolist()}, *mask.shape
    )
    assert frpy["counts"].decode("ascii") == ours["counts"]


def test_large_counts_and_negative_differences() -> None:
    counts = [0, 2**31 + 5, 3, 1, 2**20, 7, 0, 2**32 - 1]
    text = rle.counts_to_string(counts)
    np.testing.assert_array_equal(rle.counts_from_string(text), counts)
    coco = pytest.importorskip("pycocotools.mask")
    # frPyObjects compresses any counts list with the C encoder.
    small = [3, 1, 200, 1, 5, 900, 0, 40]
    expected = coco.frPyObjects({"size": [1, sum(small)], "counts": small}, 1, sum(small))
    assert rle.counts_to_string(small) == expected["counts"].decode("ascii")


def test_bbox_is_coco_exclusive() -> None:
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:5, 3:9] = True
    np.testing.assert_array_equal(rle.to_bbox(rle.encode(mask)), [3, 2, 6, 3])
    np.testing.assert_array_equal(rle.to_bbox(rle.encode(np.zeros((4, 4), bool))), [0, 0, 0, 0])


def test_non_bool_masks_use_positive_values() -> None:
    values = np.array([[0, 2], [-1, 255]], dtype=np.int16)
    np.testing.assert_array_equal(rle.decode(rle.encode(values)), values > 0)


def test_uncompressed_counts() -> None:
    decoded = rle.decode({"size": [2, 2], "counts": [1, 2, 1]})
    np.testing.assert_array_equal(decoded, [[False, True], [True, False]])


@pytest.mark.parametrize(
    "bad",
    [
        {"size": [2, 2], "counts": [1, 2]},
        {"size": [2, 2], "counts": [5, -1]},
        {"size": [2], "counts": "4"},
        {"size": [2, 2], "counts": 4},
        {"size": [2, 2], "counts": "4~"},
        {"size": [2, 2], "counts": "4P"},
    ],
)
def test_invalid_rle(bad: dict) -> None:
    with pytest.raises(ValueError):
        rle.decode(bad)


def test_encode_needs_2d() -> None:
    with pytest.raises(ValueError):
        rle.encode(np.zeros((2, 2, 2), dtype=bool))
