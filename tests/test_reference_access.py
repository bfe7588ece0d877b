from reference import golden, manifest_keys, synth_state_dict


def test_synth_state_dict_matches_manifest() -> None:
    sd = synth_state_dict("sam2.1_hiera_t")
    keys = manifest_keys("sam2.1_hiera_t")
    assert list(sd) == list(keys)
    assert all(tuple(sd[k].shape) == s for k, s in keys.items())
    assert golden("kalman")["boxes_xyxy"].shape == (30, 4)
