"""SAM2ImagePredictor: golden parity with the official image predictor, batching, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reference import REFERENCE_DIR, golden, synth_state_dict
from samurai.build import build_model
from samurai.modeling.sam2 import Sam2Model
from samurai.tracking.image_predictor import SAM2ImagePredictor, _small_components

PREFIXES = ("points_", "box_", "boxpoint_")
BOX = np.array([300, 0, 520, 400], dtype=np.float32)


def _frame0() -> np.ndarray:
    path = REFERENCE_DIR / "frames" / "bedroom" / "00000.jpg"
    return np.asarray(Image.open(path).convert("RGB"))


def _golden_prompt(prefix: str) -> dict[str, object]:
    data = golden("image_t_bedroom0")
    kwargs: dict[str, object] = {"multimask_output": bool(data[f"{prefix}in_multimask_output"])}
    if f"{prefix}in_point_coords" in data.files:
        kwargs["point_coords"] = data[f"{prefix}in_point_coords"]
        kwargs["point_labels"] = data[f"{prefix}in_point_labels"]
    if f"{prefix}in_box" in data.files:
        kwargs["box"] = data[f"{prefix}in_box"]
    return kwargs


@pytest.fixture(scope="module")
def tiny_model() -> Sam2Model:
    return build_model("sam2.1_hiera_t", synth_state_dict("sam2.1_hiera_t"))


@pytest.fixture(scope="module")
def predictor(tiny_model: Sam2Model) -> SAM2ImagePredictor:
    """Tiny model, frame 0 of bedroom set once (the encoder is the slow part)."""
    predictor = SAM2ImagePredictor(tiny_model)
    predictor.set_image(_frame0())
    return predictor


@pytest.fixture(scope="module")
def small_model() -> Sam2Model:
    """Same weights at image_size 256: cheap to encode, for shape and batching tests."""
    return build_model("sam2.1_hiera_t", synth_state_dict("sam2.1_hiera_t"), image_size=256)


@pytest.fixture(scope="module")
def small_images() -> list[np.ndarray]:
    frame = _frame0()
    return [frame[::4, ::4].copy(), frame[100:300, 200:500].copy()]


# ------------------------------------------------------------------ golden
@pytest.mark.golden
def test_image_embedding_matches_golden(predictor: SAM2ImagePredictor) -> None:
    expected = golden("image_t_bedroom0")["image_embed_f16"].astype(np.float32)
    embedding = predictor.get_image_embedding()
    assert embedding.shape == (1, 256, 64, 64)
    got = embedding.to(torch.float16).float().numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-2)


@pytest.mark.golden
@pytest.mark.parametrize("prefix", PREFIXES)
def test_predict_matches_golden(predictor: SAM2ImagePredictor, prefix: str) -> None:
    data = golden("image_t_bedroom0")
    kwargs = _golden_prompt(prefix)
    logits, ious, low_res = predictor.predict(**kwargs, return_logits=True)  # type: ignore[arg-type]
    np.testing.assert_allclose(low_res, data[f"{prefix}low_res_logits"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(ious, data[f"{prefix}iou_predictions"], rtol=0, atol=2e-4)
    expected = data[f"{prefix}masks_bool"]
    assert logits.shape == expected.shape and logits.dtype == np.float32
    assert np.mean((logits > 0) != expected) <= 1e-4

    masks, _, _ = predictor.predict(**kwargs)  # type: ignore[arg-type]
    assert masks.dtype == bool
    np.testing.assert_array_equal(masks, logits > 0)


# ----------------------------------------------------------------- prompts
def test_output_shapes(predictor: SAM2ImagePredictor) -> None:
    masks, ious, low_res = predictor.predict(np.array([[410, 200]]), np.array([1]))
    assert masks.shape == (3, 540, 960) and masks.dtype == bool
    assert ious.shape == (3,) and ious.dtype == np.float32
    assert low_res.shape == (3, 256, 256) and low_res.dtype == np.float32
    assert np.abs(low_res).max() <= 32.0
    masks, ious, low_res = predictor.predict(box=BOX, multimask_output=False)
    assert masks.shape == (1, 540, 960) and ious.shape == (1,) and low_res.shape == (1, 256, 256)


def test_normalized_coords_equal_pixel_coords(predictor: SAM2ImagePredictor) -> None:
    pixels = np.array([[410, 200], [230, 260]], dtype=np.float32)
    labels = np.array([1, 0])
    normalized = pixels / np.array([960, 540], dtype=np.float32)
    _, ious_px, low_px = predictor.predict(pixels, labels)
    _, ious_n, low_n = predictor.predict(normalized, labels, normalize_coords=False)
    np.testing.assert_allclose(low_n, low_px, rtol=0, atol=1e-5)
    np.testing.assert_allclose(ious_n, ious_px, rtol=0, atol=1e-6)


def test_batched_boxes_equal_single_boxes(predictor: SAM2ImagePredictor) -> None:
    boxes = np.stack([BOX, np.array([100, 50, 400, 500], dtype=np.float32)])
    masks, ious, low_res = predictor.predict(box=boxes, multimask_output=False)
    assert masks.shape == (2, 1, 540, 960) and ious.shape == (2, 1)
    assert low_res.shape == (2, 1, 256, 256)
    for i, box in enumerate(boxes):
        _, single_ious, single_low = predictor.predict(box=box, multimask_output=False)
        np.testing.assert_allclose(low_res[i], single_low, rtol=0, atol=1e-4)
        np.testing.assert_allclose(ious[i], single_ious, rtol=0, atol=1e-5)


def test_batched_boxes_with_points(predictor: SAM2ImagePredictor) -> None:
    boxes = np.stack([BOX, BOX])
    points = np.array([[[410, 200]], [[350, 100]]], dtype=np.float32)
    labels = np.ones((2, 1), dtype=np.int32)
    masks, ious, low_res = predictor.predict(points, labels, boxes)
    assert masks.shape == (2, 3, 540, 960) and ious.shape == (2, 3)
    _, single_ious, single_low = predictor.predict(points[0], labels[0], BOX)
    np.testing.assert_allclose(low_res[0], single_low, rtol=0, atol=1e-4)
    np.testing.assert_allclose(ious[0], single_ious, rtol=0, atol=1e-5)


def test_mask_input_round_trip(predictor: SAM2ImagePredictor) -> None:
    _, _, low_res = predictor.predict(box=BOX, multimask_output=False)
    masks, _, refined = predictor.predict(
        box=BOX, mask_input=low_res, multimask_output=False, return_logits=True
    )
    assert masks.shape == (1, 540, 960) and refined.shape == (1, 256, 256)
    assert np.isfinite(refined).all() and not np.allclose(refined, low_res)


# ------------------------------------------------------------------ images
def test_set_image_batch_matches_set_image(
    small_model: Sam2Model, small_images: list[np.ndarray]
) -> None:
    batch = SAM2ImagePredictor(small_model)
    batch.set_image_batch(small_images)
    assert batch.get_image_embedding().shape == (2, 256, 16, 16)
    assert batch.orig_hw == [(135, 240), (200, 300)]
    masks, ious, low_res = batch.predict_batch(
        [np.array([[50, 60]]), None], [np.array([1]), None], [None, np.array([10, 10, 200, 150])]
    )
    assert [m.shape for m in masks] == [(3, 135, 240), (3, 200, 300)]
    assert [i.shape for i in ious] == [(3,), (3,)]
    assert [r.shape for r in low_res] == [(3, 64, 64), (3, 64, 64)]

    single = SAM2ImagePredictor(small_model)
    for index, image in enumerate(small_images):
        single.set_image(image)
        np.testing.assert_allclose(
            single.get_image_embedding().numpy(),
            batch.get_image_embedding()[index : index + 1].numpy(),
            rtol=0,
            atol=1e-4,
        )
    _, second_ious, second_low = single.predict(box=np.array([10, 10, 200, 150]))
    np.testing.assert_allclose(second_low, low_res[1], rtol=0, atol=1e-3)
    np.testing.assert_allclose(second_ious, ious[1], rtol=0, atol=1e-4)


def test_pil_image_equals_array(small_model: Sam2Model, small_images: list[np.ndarray]) -> None:
    predictor = SAM2ImagePredictor(small_model)
    predictor.set_image(small_images[1])
    from_array = predictor.get_image_embedding().clone()
    predictor.set_image(Image.fromarray(small_images[1]))
    assert predictor.orig_hw == [(200, 300)]
    torch.testing.assert_close(predictor.get_image_embedding(), from_array, rtol=0, atol=0)


def test_batch_mode_errors(small_model: Sam2Model, small_images: list[np.ndarray]) -> None:
    predictor = SAM2ImagePredictor(small_model)
    predictor.set_image_batch(small_images)
    with pytest.raises(ValueError, match="predict_batch"):
        predictor.predict(box=BOX)
    with pytest.raises(ValueError, match="box_batch has 1 entries for 2 images"):
        predictor.predict_batch(box_batch=[BOX])
    with pytest.raises(ValueError, match="non-empty list"):
        predictor.set_image_batch([])


# --------------------------------------------------------------- bad input
def test_predict_before_set_image(small_model: Sam2Model) -> None:
    predictor = SAM2ImagePredictor(small_model)
    with pytest.raises(ValueError, match="set_image"):
        predictor.predict(box=BOX)
    with pytest.raises(RuntimeError, match="set_image"):  # the official exception type
        predictor.get_image_embedding()
    predictor.set_image(np.zeros((32, 48, 3), dtype=np.uint8))
    assert predictor.is_image_set
    predictor.reset_predictor()
    with pytest.raises(ValueError, match="set_image"):
        predictor.predict(box=BOX)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"point_coords": [[10, 10]]}, "given together"),
        ({"point_labels": [1]}, "given together"),
        ({"point_coords": [10, 10], "point_labels": [1]}, r"must be \(N, 2\)"),
        ({"point_coords": [[10, 10, 1]], "point_labels": [1]}, r"must be \(N, 2\)"),
        ({"point_coords": [[10, 10], [20, 20]], "point_labels": [1]}, "does not match"),
        ({"point_coords": [[np.nan, 10]], "point_labels": [1]}, "NaN"),
        ({"point_coords": [[10, 10]], "point_labels": [np.nan]}, "NaN"),
        ({"box": [0, 0, np.inf, 10]}, "NaN or infinite"),
        ({"box": [0, 0, 10]}, r"box must be \(4,\)"),
        ({"box": np.zeros((2, 4)), "point_coords": [[1, 1]], "point_labels": [1]}, "2 boxes"),
        ({"mask_input": np.zeros((1, 128, 128))}, "mask_input must be"),
        ({"mask_input": np.zeros((256, 256))}, "mask_input must be"),
        ({"point_coords": [["a", "b"]], "point_labels": [1]}, "numeric"),
    ],
)
def test_bad_prompts(
    predictor: SAM2ImagePredictor, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        predictor.predict(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((32, 32), dtype=np.uint8),
        np.zeros((32, 32, 4), dtype=np.uint8),
        np.zeros((32, 32, 3), dtype=np.float32),
        [[0, 0, 0]],
    ],
)
def test_bad_images(small_model: Sam2Model, image: object) -> None:
    predictor = SAM2ImagePredictor(small_model)
    with pytest.raises(ValueError):
        predictor.set_image(image)  # type: ignore[arg-type]
    assert not predictor.is_image_set


# --------------------------------------------------------- post-processing
def test_small_components_use_8_connectivity() -> None:
    binary = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    binary[0, 0, 0, 0] = binary[0, 0, 1, 1] = binary[0, 0, 2, 2] = True  # diagonal, area 3
    binary[0, 0, 5:8, 5:8] = True  # area 9
    small = _small_components(binary, 3)
    assert small.shape == binary.shape
    assert small[0, 0, :3, :3].sum() == 3 and not small[0, 0, 5:, 5:].any()
    assert not _small_components(binary, 2).any()


def test_hole_and_sprinkle_removal(small_model: Sam2Model) -> None:
    logits = torch.full((1, 1, 64, 64), -5.0)
    logits[0, 0, 10:40, 10:40] = 5.0
    logits[0, 0, 20:22, 20:22] = -5.0  # hole, area 4
    logits[0, 0, 50, 50:53] = 5.0  # sprinkle, area 3
    plain = SAM2ImagePredictor(small_model)._postprocess(logits, (64, 64))
    cleaned = SAM2ImagePredictor(small_model, max_hole_area=4, max_sprinkle_area=3)._postprocess(
        logits, (64, 64)
    )
    assert (plain[0, 0, 20:22, 20:22] < 0).all() and (plain[0, 0, 50, 50:53] > 0).all()
    assert (cleaned[0, 0, 20:22, 20:22] == 10.0).all()
    assert (cleaned[0, 0, 50, 50:53] == -10.0).all()
    outside = torch.ones(64, 64, dtype=torch.bool)
    outside[20:22, 20:22] = False
    outside[50, 50:53] = False
    torch.testing.assert_close(cleaned[0, 0][outside], plain[0, 0][outside])
    upsampled = SAM2ImagePredictor(small_model, max_hole_area=4)._postprocess(logits, (128, 96))
    assert upsampled.shape == (1, 1, 128, 96)


# ------------------------------------------------------- official entry points
def test_official_image_api_from_package_top_level(small_images: list[np.ndarray]) -> None:
    """``from samurai import SAM2ImagePredictor, build_sam2`` with an official config name, as
    the official image notebooks do; batch calls give each image's single-image result."""
    import samurai

    assert samurai.SAM2ImagePredictor is SAM2ImagePredictor
    assert "SAM2ImagePredictor" in samurai.__all__
    model = samurai.build_sam2(
        "configs/sam2.1/sam2.1_hiera_t.yaml",
        synth_state_dict("sam2.1_hiera_t"),
        device="cpu",
        hydra_overrides_extra=["++model.image_size=256"],
    )
    predictor = samurai.SAM2ImagePredictor(model, 0.0)  # mask_threshold positional, as upstream
    predictor.set_image_batch(small_images)
    boxes = [np.array([10, 10, 120, 100]), np.array([20, 30, 200, 150])]
    masks, ious, low_res = predictor.predict_batch(None, None, box_batch=boxes)
    for i, image in enumerate(small_images):
        single = samurai.SAM2ImagePredictor(model)
        single.set_image(image)
        m, s, lr = single.predict(box=boxes[i])
        np.testing.assert_array_equal(masks[i], m)
        np.testing.assert_allclose(ious[i], s, atol=1e-5)
        np.testing.assert_allclose(low_res[i], lr, atol=1e-4)


def test_build_sam2_apply_postprocessing_sets_decoder() -> None:
    sd = synth_state_dict("sam2.1_hiera_t")
    import samurai

    on = samurai.build_sam2("sam2.1/sam2.1_hiera_t", sd, image_size=256)
    off = samurai.build_sam2(
        "sam2.1/sam2.1_hiera_t", sd, image_size=256, apply_postprocessing=False
    )
    assert on.sam_mask_decoder.dynamic_multimask_via_stability is True
    assert off.sam_mask_decoder.dynamic_multimask_via_stability is False
    with pytest.raises(ValueError, match="belong to a video predictor"):
        samurai.build_sam2("sam2.1/sam2.1_hiera_t", sd, fill_hole_area=0)
