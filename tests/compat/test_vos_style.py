"""A loop in the style of SAM 2's tools/vos_inference.py (DAVIS layout, first-frame PNG masks,
palette PNG outputs) that also reads the ``inference_state`` keys SAM 2 user code reads, and
the predictor attributes and ``nn.Module`` methods official code calls."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reference import REFERENCE_DIR, synth_state_dict
from samurai import SAM2VideoPredictor, build_sam2_video_predictor

NUM_FRAMES = 6
SIZE = 256
PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9)


@pytest.fixture(scope="module")
def davis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JPEGImages/bedroom/00000..00005.jpg and Annotations/bedroom/00000.png (objects 1, 2)."""
    root = tmp_path_factory.mktemp("davis")
    frames = root / "JPEGImages" / "bedroom"
    frames.mkdir(parents=True)
    for path in sorted((REFERENCE_DIR / "frames" / "bedroom").glob("*.jpg"))[:NUM_FRAMES]:
        (frames / path.name).symlink_to(path)
    ann = np.zeros((540, 960), np.uint8)
    ann[0:400, 300:520] = 1
    ann[180:470, 560:760] = 2
    (root / "Annotations" / "bedroom").mkdir(parents=True)
    image = Image.fromarray(ann)
    image.putpalette(PALETTE)
    image.save(root / "Annotations" / "bedroom" / "00000.png")
    return root


@pytest.fixture(scope="module")
def predictor() -> SAM2VideoPredictor:
    # as vos_inference.py builds it (per_obj_png_file=False -> non-overlapping masks)
    return build_sam2_video_predictor(
        config_file="configs/sam2.1/sam2.1_hiera_t.yaml",
        ckpt_path=synth_state_dict("sam2.1_hiera_t"),
        device="cpu",
        apply_postprocessing=False,
        hydra_overrides_extra=["++model.non_overlap_masks=true", f"++model.image_size={SIZE}"],
        vos_optimized=False,
    )


def load_ann_png(path: str) -> tuple[np.ndarray, list[int]]:
    mask = Image.open(path)
    return np.array(mask).astype(np.uint8), mask.getpalette()


def get_per_obj_mask(mask: np.ndarray) -> dict[int, np.ndarray]:
    object_ids = [int(i) for i in np.unique(mask) if i > 0]
    return {object_id: (mask == object_id) for object_id in object_ids}


def put_per_obj_mask(per_obj_mask: dict[int, np.ndarray], height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    for object_id in sorted(per_obj_mask)[::-1]:
        mask[per_obj_mask[object_id].reshape(height, width)] = object_id
    return mask


@torch.inference_mode()
@torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=torch.cuda.is_available())
def vos_inference(predictor, base_video_dir, input_mask_dir, output_mask_dir, video_name):
    video_dir = os.path.join(base_video_dir, video_name)
    frame_names = sorted(
        os.path.splitext(p)[0]
        for p in os.listdir(video_dir)
        if os.path.splitext(p)[-1] in [".jpg", ".jpeg", ".JPG", ".JPEG"]
    )
    inference_state = predictor.init_state(video_path=video_dir, async_loading_frames=False)
    height = inference_state["video_height"]
    width = inference_state["video_width"]
    mask, palette = load_ann_png(os.path.join(input_mask_dir, video_name, f"{frame_names[0]}.png"))
    for object_id, object_mask in get_per_obj_mask(mask).items():
        predictor.add_new_mask(
            inference_state=inference_state, frame_idx=0, obj_id=object_id, mask=object_mask
        )
    os.makedirs(os.path.join(output_mask_dir, video_name), exist_ok=True)
    video_segments = {}
    for out_frame_idx, out_obj_ids, out_mask_logits in predictor.propagate_in_video(
        inference_state
    ):
        video_segments[out_frame_idx] = {
            out_obj_id: (out_mask_logits[i] > 0.0).cpu().numpy()
            for i, out_obj_id in enumerate(out_obj_ids)
        }
    for out_frame_idx, per_obj_output_mask in video_segments.items():
        out = Image.fromarray(put_per_obj_mask(per_obj_output_mask, height, width))
        out.putpalette(palette)
        out.save(os.path.join(output_mask_dir, video_name, f"{frame_names[out_frame_idx]}.png"))
    return inference_state, video_segments


def test_vos_inference_loop_and_state_keys(predictor, davis: Path, tmp_path: Path) -> None:
    state, segments = vos_inference(
        predictor, davis / "JPEGImages", davis / "Annotations", tmp_path, "bedroom"
    )
    outputs = sorted((tmp_path / "bedroom").glob("*.png"))
    assert [p.stem for p in outputs] == [f"{i:05d}" for i in range(NUM_FRAMES)]
    first = np.array(Image.open(outputs[0]))
    assert first.shape == (540, 960) and set(np.unique(first)) <= {0, 1, 2}
    assert Image.open(outputs[0]).getpalette()[:9] == PALETTE[:9]
    for per_obj in segments.values():  # non_overlap_masks: no pixel belongs to two objects
        assert not np.logical_and(per_obj[1], per_obj[2]).any()

    # the keys SAM 2 user code reads
    assert (state["video_height"], state["video_width"], state["num_frames"]) == (540, 960, 6)
    assert state["obj_ids"] == [1, 2]
    assert state["obj_id_to_idx"] == {1: 0, 2: 1} and state["obj_idx_to_id"] == {0: 1, 1: 2}
    assert len(state["images"]) == NUM_FRAMES
    assert state["images"][3].shape == (3, SIZE, SIZE)
    torch.testing.assert_close(state["images"][-1], state["images"][NUM_FRAMES - 1])
    assert len(list(state["images"])) == NUM_FRAMES
    with pytest.raises(IndexError, match="out of range"):
        state["images"][NUM_FRAMES]
    assert state["frames_already_tracked"] == {f: {"reverse": False} for f in range(NUM_FRAMES)}
    assert state["frames_tracked_per_obj"][1] == state["frames_already_tracked"]
    assert state["tracking_has_started"] is True
    assert state["mask_inputs_per_obj"][0][0].shape == (1, 1, SIZE, SIZE)
    assert state["point_inputs_per_obj"] == {0: {}, 1: {}}
    out = state["output_dict_per_obj"][1]
    assert list(out["cond_frame_outputs"]) == [0]
    assert max(out["non_cond_frame_outputs"]) == NUM_FRAMES - 1
    entry = out["cond_frame_outputs"][0]
    assert entry["pred_masks"].shape == (1, 1, SIZE // 4, SIZE // 4)
    assert entry["obj_ptr"].shape == (1, 256)
    assert entry["object_score_logits"].shape == (1, 1)
    assert state["temp_output_dict_per_obj"][0] == {
        "cond_frame_outputs": {},
        "non_cond_frame_outputs": {},
    }
    assert "video_height" in state and state.get("cached_features") is None
    with pytest.raises(KeyError, match="no key 'cached_features'"):
        state["cached_features"]
    with pytest.raises(TypeError, match=r"inference_state\['num_frames'\] is read-only"):
        state["num_frames"] = 7


def test_separate_inference_per_object(predictor, davis: Path) -> None:
    """vos_separate_inference_per_object: reset_state, one object at a time, logits per object."""
    state = predictor.init_state(video_path=str(davis / "JPEGImages" / "bedroom"))
    mask, _ = load_ann_png(str(davis / "Annotations" / "bedroom" / "00000.png"))
    scores = {}
    for object_id, object_mask in get_per_obj_mask(mask).items():
        predictor.reset_state(state)
        predictor.add_new_mask(state, 0, object_id, object_mask)
        scores[object_id] = {
            f: logits.cpu().numpy()
            for f, _, logits in predictor.propagate_in_video(state, start_frame_idx=0)
        }
        assert state["obj_ids"] == [object_id]
    assert sorted(scores[2]) == list(range(NUM_FRAMES))
    assert scores[1][2].shape == (1, 1, 540, 960)


def test_predictor_looks_like_the_official_module(predictor) -> None:
    # attributes official code, the demo backend and the HF conversion scripts read
    assert predictor.eval() is predictor and predictor.to("cpu") is predictor
    params = list(predictor.parameters())
    assert sum(p.numel() for p in params) == sum(p.numel() for p in predictor.model.parameters())
    sd = predictor.state_dict()
    assert "sam_mask_decoder.iou_token.weight" in sd
    predictor.load_state_dict(sd)
    assert predictor.image_encoder is predictor.model.image_encoder
    assert predictor.sam_mask_decoder is predictor.model.sam_mask_decoder
    assert predictor.maskmem_tpos_enc.shape == (7, 1, 1, 64)
    assert (predictor.num_maskmem, predictor.hidden_dim, predictor.mem_dim) == (7, 256, 64)
    assert (predictor.image_size, predictor.backbone_stride) == (SIZE, 16)
    assert predictor.sam_image_embedding_size == SIZE // 16
    assert predictor.samurai_mode is False and predictor.kf_score_weight == 0.15
    assert predictor.max_cond_frames_in_attn == -1 and predictor.fill_hole_area == 0
    with pytest.raises(AttributeError, match="no attribute 'not_a_field'"):
        predictor.not_a_field  # noqa: B018
    with pytest.raises(ValueError, match="inference only"):
        predictor.train()


def test_config_attributes_can_be_set(davis: Path) -> None:
    predictor = build_sam2_video_predictor(
        "configs/samurai/sam2.1_hiera_t.yaml", synth_state_dict("sam2.1_hiera_t"), image_size=SIZE
    )
    predictor.fill_hole_area = 0
    predictor.kf_score_weight = 0.5
    assert predictor.tracker.fill_hole_area == 0 and predictor.samurai.kf_score_weight == 0.5
    assert predictor.stepper.tracker.fill_hole_area == 0
    predictor.samurai_mode = False
    assert predictor.samurai is None and predictor.stepper.samurai is None
    with pytest.raises(ValueError, match="SAMURAI option"):
        predictor.stable_frames_threshold = 3
    with pytest.raises(ValueError, match="fixed by the model"):
        predictor.num_maskmem = 3
    with pytest.raises(ValueError, match="fill_hole_area='8' must be int"):
        predictor.fill_hole_area = "8"
    with pytest.raises(ValueError, match="must be bool"):
        predictor.non_overlap_masks = 1
    predictor.min_obj_score_logits = 0  # an int for a float option is fine
    assert predictor.min_obj_score_logits == 0


def test_object_id_helpers(predictor, davis: Path) -> None:
    state = predictor.init_state(str(davis / "JPEGImages" / "bedroom"))
    assert predictor._get_obj_num(state) == 0
    assert predictor._obj_id_to_idx(state, 5) == 0
    assert predictor._obj_id_to_idx(state, np.int64(9)) == 1
    assert predictor._obj_idx_to_id(state, 1) == 9 and predictor._get_obj_num(state) == 2
    with pytest.raises(ValueError, match="out of range"):
        predictor._obj_idx_to_id(state, 2)


def test_remove_object_returns_official_shape(predictor, davis: Path) -> None:
    """The demo backend unpacks ``new_obj_ids, updated_frames`` and each frame as
    ``frame_index, video_res_masks``."""
    state = predictor.init_state(str(davis / "JPEGImages" / "bedroom"))
    predictor.add_new_points_or_box(state, 0, 1, box=[300, 0, 520, 400])
    predictor.add_new_points_or_box(state, 2, 2, box=[560, 180, 760, 470])
    new_obj_ids, updated_frames = predictor.remove_object(state, 1)
    assert new_obj_ids == [2]
    for frame_index, video_res_masks in updated_frames:
        assert frame_index == 0 and video_res_masks.shape == (1, 1, 540, 960)
    assert predictor.remove_object(state, 2) == ([], [])


def test_non_overlap_masks_keeps_one_object_per_pixel(predictor, davis: Path) -> None:
    a = np.zeros((540, 960), bool)
    a[0:400, 300:520] = True
    b = np.zeros((540, 960), bool)
    b[180:470, 400:760] = True  # overlaps a

    def overlap() -> int:
        state = predictor.init_state(str(davis / "JPEGImages" / "bedroom"))
        predictor.add_new_mask(state, 0, 1, a)
        _, _, masks = predictor.add_new_mask(state, 0, 2, b)
        return int(((masks[0, 0] > 0) & (masks[1, 0] > 0)).sum())

    assert predictor.non_overlap_masks is True
    assert overlap() == 0
    predictor.non_overlap_masks = False
    try:
        assert overlap() > 10000
    finally:
        predictor.non_overlap_masks = True
