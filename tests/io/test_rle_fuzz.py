"""Property-based fuzzing of COCO RLE (samurai.io.rle): masks round-trip exactly, and any input
gives a valid result or a one-line ``ValueError``, never another exception."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from samurai.io import rle

FUZZ = settings(max_examples=300, deadline=None)

masks = st.tuples(
    arrays(np.uint8, st.tuples(st.integers(0, 24), st.integers(0, 24)), elements=st.integers(0, 3)),
    st.sampled_from([np.bool_, np.uint8, np.int32, np.float32]),
).map(lambda pair: pair[0].astype(pair[1]))


def _ok_or_value_error(call, *args):
    try:
        return call(*args)
    except ValueError as exc:
        assert "\n" not in str(exc), str(exc)
        return None


@FUZZ
@given(masks)
def test_round_trip(mask: np.ndarray) -> None:
    encoded = rle.encode(mask)
    assert encoded["size"] == list(mask.shape)
    decoded = rle.decode(encoded)
    np.testing.assert_array_equal(decoded, mask > 0)
    assert rle.area(encoded) == int((mask > 0).sum())
    np.testing.assert_array_equal(rle.counts_from_string(encoded["counts"]), rle._counts(mask))
    # the uncompressed form and bytes decode the same
    raw = {"size": encoded["size"], "counts": rle._counts(mask).tolist()}
    np.testing.assert_array_equal(rle.decode(raw), decoded)
    as_bytes = {"size": encoded["size"], "counts": encoded["counts"].encode()}
    np.testing.assert_array_equal(rle.decode(as_bytes), decoded)
    box = rle.to_bbox(encoded)
    assert box.shape == (4,) and (box >= 0).all()


sizes = st.one_of(
    st.lists(st.integers(-3, 40), min_size=0, max_size=3),
    st.tuples(st.integers(0, 40), st.integers(0, 40)).map(list),
    st.text(max_size=4),
    st.none(),
    st.lists(st.one_of(st.floats(allow_nan=True), st.text(max_size=2)), max_size=2),
)
counts = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=st.characters(min_codepoint=48, max_codepoint=111), max_size=12),
    st.binary(max_size=12),
    st.lists(st.integers(-5, 2000), max_size=8),
    st.lists(st.integers(-(2**70), 2**70), max_size=3),
    st.lists(st.one_of(st.floats(), st.text(max_size=2)), max_size=3),
    st.integers(),
    st.none(),
)


@FUZZ
@given(st.one_of(st.fixed_dictionaries({"size": sizes, "counts": counts}), st.none(), st.text()))
def test_decoders_accept_or_refuse_cleanly(obj: object) -> None:
    decoded = _ok_or_value_error(rle.decode, obj)
    if decoded is not None:
        height, width = (int(v) for v in obj["size"])  # type: ignore[index]
        assert decoded.shape == (height, width) and decoded.dtype == np.bool_
        assert _ok_or_value_error(rle.area, obj) == int(decoded.sum())
        assert _ok_or_value_error(rle.to_bbox, obj) is not None
    else:
        _ok_or_value_error(rle.area, obj)
        _ok_or_value_error(rle.to_bbox, obj)


@FUZZ
@given(st.one_of(st.lists(st.integers(-(2**40), 2**40), max_size=10), st.text(max_size=10)))
def test_counts_string_round_trip_or_refusal(values: list[int] | str) -> None:
    if isinstance(values, str):
        _ok_or_value_error(rle.counts_from_string, values)
        return
    text = _ok_or_value_error(rle.counts_to_string, values)
    if text is not None:
        np.testing.assert_array_equal(rle.counts_from_string(text), np.array(values, np.int64))


@FUZZ
@given(
    arrays(
        dtype=np.bool_,
        shape=st.integers(0, 3).flatmap(lambda n: st.tuples(*[st.integers(0, 4)] * n)),
    )
)
def test_encode_wrong_dimensions(mask: np.ndarray) -> None:
    if mask.ndim == 2:
        assert rle.decode(rle.encode(mask)).shape == mask.shape
    else:
        assert _ok_or_value_error(rle.encode, mask) is None
