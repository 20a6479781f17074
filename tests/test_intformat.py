import numpy as np
import pytest

from nirdeploy.backend.intformat import IntFormat


def test_ranges():
    assert (IntFormat(8).min, IntFormat(8).max) == (-128, 127)
    assert (IntFormat(4, signed=False).min, IntFormat(4, signed=False).max) == (0, 15)
    assert (IntFormat(16).min, IntFormat(16).max) == (-32768, 32767)


def test_saturate_and_wrap_hand_values():
    sat = IntFormat(16)
    wrap = IntFormat(16, overflow="wrap")
    x = np.array([32767 + 1, -32768 - 1, 100 << 9, 127 << 8, -128 << 9])
    assert sat.apply(x).tolist() == [32767, -32768, 32767, 32512, -32768]
    # 100 << 9 = 51200 -> 51200 - 65536 = -14336; -128 << 9 = -65536 -> 0
    assert wrap.apply(x).tolist() == [-32768, 32767, -14336, 32512, 0]
    u = IntFormat(4, signed=False, overflow="wrap")
    assert u.apply([16, 17, -1]).tolist() == [0, 1, 15]


def test_quantize_rounds_half_away_from_zero():
    f = IntFormat(8)
    assert f.quantize([0.5, -0.5, 1.49, -2.5, 300.0, -300.0]).tolist() == [1, -1, 1, -3, 127, -128]


def test_in_range_and_count():
    f = IntFormat(8)
    assert f.in_range([-128, 127, 128, -129]).tolist() == [True, True, False, False]
    assert f.count_out_of_range([-200, 0, 200]) == 2


def test_bad_formats_rejected():
    with pytest.raises(ValueError):
        IntFormat(0)
    with pytest.raises(ValueError):
        IntFormat(8, overflow="clamp")


def test_roundtrip_dict():
    f = IntFormat(16, signed=True, overflow="wrap", name="shifted_weight")
    assert IntFormat.from_dict(f.to_dict(), name="shifted_weight") == f
    assert str(f) == "int16(wrap)"


def test_symmetric_format_drops_the_most_negative_code():
    f = IntFormat(24, signed=True, overflow="saturate", symmetric=True)  # Loihi's voltage clip
    assert (f.min, f.max) == (-(2**23 - 1), 2**23 - 1)
    assert f.saturate([-(2**23), 2**23]).tolist() == [-(2**23 - 1), 2**23 - 1]
    assert IntFormat.from_dict(f.to_dict()) == f
    assert IntFormat(8).min == -128
