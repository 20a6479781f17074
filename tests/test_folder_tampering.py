"""Tampered compiled folders, the same contract on every target: each fault of a file the
target's ``load`` reads (a wrong type, an out-of-range value, a missing key, swapped shapes, two
fields that disagree) makes ``nirdeploy simulate`` exit 2 with a message naming the file and the
field, never exit 3, a traceback or an output file.

tests/adversarial.py holds the file-system and archive attacks (links, fifos, zip bombs) for Xylo
and Speck; this table is about the values inside the files, for Xylo, Speck and Loihi 2."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nirdeploy.cli import main

from graphs import ff_graph, write
from safety_helpers import SPECK_INPUT, compile_braille, compile_speck

XMETA, XCFG = "xylo_meta.json", "xylo_config.npz"
SMETA, SNPZ = "speck_meta.json", "sinabs_model.npz"
LMETA, LNPZ = "loihi2_meta.json", "loihi2_network.npz"


def _json(name: str, fn):
    def edit(d: Path):
        p = d / name
        m = json.loads(p.read_text())
        m = fn(m) or m
        p.write_text(json.dumps(m))

    return edit


def _npz(name: str, fn):
    def edit(d: Path):
        p = d / name
        with np.load(p, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        a = fn(a) or a
        b = io.BytesIO()
        np.savez(b, **a)
        p.write_bytes(b.getvalue())

    return edit


def _set(key, value):
    def fn(a):
        a[key] = value(a) if callable(value) else value

    return fn


def _drop(key):
    def fn(m):
        del m[key]

    return fn


def _meta_set(path: str, value):
    """Set a dotted key path (``network.layers.0.du``) of a JSON object; a callable gets the old value."""

    def fn(m):
        *head, last = path.split(".")
        obj = m
        for k in head:
            obj = obj[int(k)] if isinstance(obj, list) else obj[k]
        key = int(last) if isinstance(obj, list) else last
        obj[key] = value(obj[key]) if callable(value) else value

    return fn


def _both(name: str, key: str, value):
    """The same change in the target's meta file and deployment.json (which the core compares
    first), so that the target's own check is what refuses it."""

    def edit(d: Path):
        for f in (name, "deployment.json"):
            _json(f, _meta_set(key, value))(d)

    return edit


def _speck_layers(fn):
    def edit(m):
        fn(m["network"]["layers"])

    return edit


def _sources(i: int, j_of_later: int):
    def fn(layers):
        layers[i]["sources"] = [[layers[j_of_later]["name"], 1]]

    return fn


# (target, id, file named in the message, field named in the message, edit)
CASES = [
    # -- Xylo: xylo_meta.json and xylo_config.npz ------------------------------------------------------
    ("xylo", "meta_latency_a_string", XMETA, "latency_steps", _json(XMETA, _meta_set("latency_steps", "3"))),
    ("xylo", "meta_latency_beyond_the_layers", XMETA, "latency_steps", _both(XMETA, "latency_steps", 10**6)),
    ("xylo", "meta_readout_missing", XMETA, "readout", _json(XMETA, _drop("readout"))),
    ("xylo", "meta_scales_on_a_spike_readout", XMETA, "output_scale", _json(XMETA, _meta_set("output_scale", [1.0] * 7))),
    ("xylo", "meta_vmem_without_scales", XMETA, "output_scale", _json(XMETA, _meta_set("readout", "vmem"))),
    ("xylo", "meta_zero_scale", XMETA, "output_scale", _json(XMETA, lambda m: {**m, "readout": "vmem", "output_scale": [0.0] * 7})),
    ("xylo", "meta_output_shape_swapped", XMETA, "output_shape", _json(XMETA, _meta_set("output_shape", [1, 3]))),
    ("xylo", "cfg_threshold_zero", XCFG, "threshold", _npz(XCFG, _set("threshold", lambda a: a["threshold"] * 0))),
    ("xylo", "cfg_output_threshold_negative", XCFG, "threshold_out", _npz(XCFG, _set("threshold_out", lambda a: -a["threshold_out"]))),
    ("xylo", "cfg_weights_in_axes_swapped", XCFG, "weights_in", _npz(XCFG, _set("weights_in", lambda a: a["weights_in"].transpose(1, 0, 2)))),
    ("xylo", "cfg_dash_a_float", XCFG, "dash_syn", _npz(XCFG, _set("dash_syn", lambda a: a["dash_syn"] + 0.5))),
    ("xylo", "cfg_shift_negative", XCFG, "weight_shift_rec", _npz(XCFG, _set("weight_shift_rec", np.int64(-1)))),
    ("xylo", "cfg_member_missing", XCFG, "dash_mem_out", _npz(XCFG, lambda a: {k: v for k, v in a.items() if k != "dash_mem_out"})),
    ("xylo", "cfg_bias_without_bias_enable", XCFG, "bias", _npz(XCFG, _set("bias", lambda a: a["bias"] + 3))),
    ("xylo", "cfg_bias_enable_a_vector", XCFG, "bias_enable", _npz(XCFG, _set("bias_enable", np.array([1, 1])))),
    # -- Speck: speck_meta.json and sinabs_model.npz ------------------------------------------------------
    ("speck", "meta_source_names_a_later_layer", SMETA, "network.layers[1].sources[0]", _json(SMETA, _speck_layers(_sources(1, 2)))),
    ("speck", "meta_sources_form_a_cycle", SMETA, "network.layers[0].sources[0]", _json(SMETA, _speck_layers(_sources(0, 2)))),
    ("speck", "meta_source_is_its_own_layer", SMETA, "network.layers[1].sources[0]", _json(SMETA, _speck_layers(_sources(1, 1)))),
    ("speck", "meta_threshold_low_above_high", SMETA, "network.layers[0].threshold_low",
     _json(SMETA, _meta_set("network.layers.0.threshold_low", lambda t: 300))),
    ("speck", "meta_slow_clock_zero", SMETA, "options.slow_clock_ticks_per_step", _json(SMETA, _meta_set("options.slow_clock_ticks_per_step", 0))),
    ("speck", "meta_slow_clock_1e12", SMETA, "options.slow_clock_ticks_per_step",
     _json(SMETA, _meta_set("options.slow_clock_ticks_per_step", 10**12))),
    ("speck", "meta_scale_zero", SMETA, "network.layers[0].scale", _json(SMETA, _meta_set("network.layers.0.scale", 0))),
    ("speck", "meta_scale_a_string", SMETA, "network.layers[0].scale", _json(SMETA, _meta_set("network.layers.0.scale", "1.5"))),
    ("speck", "meta_layer_without_has_bias", SMETA, "network.layers[1]", _json(SMETA, lambda m: m["network"]["layers"][1].pop("has_bias"))),
    # (the layer's own shapes agree with each other; the next layer's source no longer does)
    ("speck", "meta_neuron_shape_swapped", SMETA, "network.layers[1].sources[0]",
     _json(SMETA, _meta_set("network.layers.0.neuron_shape", lambda s: [s[1], s[0], s[2]]))),
    ("speck", "meta_return_to_zero_a_string", SMETA, "network.layers[0].return_to_zero",
     _json(SMETA, _meta_set("network.layers.0.return_to_zero", "yes"))),
    ("speck", "meta_output_pool_3", SMETA, "network.output_pool", _json(SMETA, _meta_set("network.output_pool", 3))),
    ("speck", "meta_core_negative", SMETA, "network.layers[0].core", _json(SMETA, _meta_set("network.layers.0.core", -1))),
    ("speck", "npz_weight_axes_swapped", SNPZ, "weight_0", _npz(SNPZ, _set("weight_0", lambda a: a["weight_0"].transpose(1, 0, 2, 3)))),
    ("speck", "npz_bias_missing", SNPZ, "bias_1", _npz(SNPZ, lambda a: {k: v for k, v in a.items() if k != "bias_1"})),
    # -- Loihi 2: loihi2_meta.json and loihi2_network.npz --------------------------------------------------
    ("loihi2", "meta_voltage_readout_without_scales", LMETA, "output_scale", _json(LMETA, _meta_set("network.readout", "v"))),
    ("loihi2", "meta_scales_of_the_wrong_length", LMETA, "output_scale",
     _json(LMETA, lambda m: {**m, "network": {**m["network"], "readout": "v"}, "output_scale": [1.0] * 2})),
    ("loihi2", "meta_du_beyond_12_bit", LMETA, "network.layers[0].du", _json(LMETA, _meta_set("network.layers.0.du", 5000))),
    ("loihi2", "meta_vth_zero", LMETA, "network.layers[1].vth", _json(LMETA, _meta_set("network.layers.1.vth", 0))),
    ("loihi2", "meta_weight_exp_9", LMETA, "network.layers[0].synapses[0].weight_exp",
     _json(LMETA, _meta_set("network.layers.0.synapses.0.weight_exp", 9))),
    # (a recurrent source is legal; its size is not the weight's)
    ("loihi2", "meta_synapse_from_a_later_layer", LNPZ, "L0.S0.weight",
     _json(LMETA, _meta_set("network.layers.0.synapses.0.src", 1))),
    ("loihi2", "meta_synapse_from_nowhere", LMETA, "network.layers[1].synapses[0].src",
     _json(LMETA, _meta_set("network.layers.1.synapses.0.src", 7))),
    ("loihi2", "meta_latency_missing", LMETA, "latency_steps", _json(LMETA, _drop("latency_steps"))),
    ("loihi2", "meta_latency_beyond_the_layers", LMETA, "latency_steps", _both(LMETA, "latency_steps", 10**6)),
    ("loihi2", "meta_output_layer_missing", LMETA, "network.output", _json(LMETA, _meta_set("network.output", 5))),
    ("loihi2", "meta_network_input_shape_disagrees", LMETA, "network.input_shape", _json(LMETA, _meta_set("network.input_shape", [2, 2]))),
    ("loihi2", "meta_output_shape_disagrees", LMETA, "output_shape", _both(LMETA, "output_shape", [4])),
    ("loihi2", "meta_sign_mode_unknown", LMETA, "network.layers[0].synapses[0].sign_mode",
     _json(LMETA, _meta_set("network.layers.0.synapses.0.sign_mode", "both"))),
    ("loihi2", "meta_shape_a_string", LMETA, "network.layers[0].shape", _json(LMETA, _meta_set("network.layers.0.shape", "8"))),
    # a convolutional network (conv synapses: geometry from the meta file, kernels from the npz)
    ("loihi2-conv", "meta_stride_zero", LMETA, "network.layers[1].synapses[0].stride", _json(LMETA, _meta_set("network.layers.1.synapses.0.stride", [0, 0]))),
    ("loihi2-conv", "meta_stride_no_longer_fits", LMETA, "network.layers[1].synapses[0]", _json(LMETA, _meta_set("network.layers.1.synapses.0.stride", [1, 1]))),
    ("loihi2-conv", "meta_conv_layer_flat", LMETA, "network.layers[1].shape", _json(LMETA, _meta_set("network.layers.1.shape", [36]))),
    ("loihi2-conv", "npz_kernel_channels_swapped", LNPZ, "L1.S0.weight", _npz(LNPZ, _set("L1.S0.weight", lambda a: a["L1.S0.weight"].transpose(1, 0, 2, 3)[:, :2]))),
    ("loihi2", "npz_dense_weight_transposed", LNPZ, "L1.S0.weight", _npz(LNPZ, _set("L1.S0.weight", lambda a: a["L1.S0.weight"].T))),
    ("loihi2", "npz_weight_beyond_8_bit", LNPZ, "L0.S0.weight", _npz(LNPZ, _set("L0.S0.weight", lambda a: a["L0.S0.weight"] * 0 + 4000))),
    ("loihi2", "npz_bias_mantissa_beyond_13_bit", LNPZ, "L0.bias_mant", _npz(LNPZ, _set("L0.bias_mant", lambda a: a["L0.bias_mant"] * 0 + 70000))),
    ("loihi2", "npz_bias_exponent_negative", LNPZ, "L1.bias_exp", _npz(LNPZ, _set("L1.bias_exp", lambda a: a["L1.bias_exp"] * 0 - 1))),
    ("loihi2", "npz_bias_of_the_wrong_length", LNPZ, "L0.bias_mant", _npz(LNPZ, _set("L0.bias_mant", lambda a: a["L0.bias_mant"][:-1]))),
    # the core's report.json: the keys the core reads from details (readout, the chip's input cap)
    *[(t, f"report_{cid}", "report.json", f"details.{key}", _json("report.json", _meta_set(f"details.{key}", value)))
      for t in ("xylo", "speck", "loihi2")
      for cid, key, value in (("readout_unknown", "readout", "bogus"), ("readout_a_number", "readout", 1),
                              ("input_cap_negative", "input_events_cap", -1), ("input_cap_a_string", "input_events_cap", "15"))],
]


def _compile_loihi2_conv(folder: Path) -> Path:
    from speck_graphs import chain_graph

    g = folder / "conv.nir"
    import nir

    nir.write(str(g), chain_graph([{"k": 3, "c_out": 4, "padding": 1}, {"k": 3, "c_out": 4, "stride": 2}], (2, 8, 8), seed=0, bias=False))
    out = folder / "loihi2-conv"
    r = CliRunner().invoke(main, ["compile", str(g), "--target", "loihi2", "--dt", "1e-3", "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


def _compile_loihi2(folder: Path) -> Path:
    g = write(ff_graph(n_in=4, n_hid=8, n_out=3, seed=1), folder / "ff.nir")
    out = folder / "loihi2"
    r = CliRunner().invoke(main, ["compile", str(g), "--target", "loihi2", "--dt", "1e-4", "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tamper")
    rng = np.random.default_rng(0)
    xs = {"xylo": rng.poisson(0.2, size=(2, 20, 12)), "speck": (rng.random((2, 10) + SPECK_INPUT) < 0.3).astype(np.int64),
          "loihi2": (rng.random((2, 20, 4)) < 0.3).astype(np.int64), "loihi2-conv": (rng.random((2, 5, 2, 8, 8)) < 0.3).astype(np.int64)}
    for sub in ("x", "s"):
        (root / sub).mkdir()
    dirs = {"xylo": compile_braille(root / "x"), "speck": compile_speck(root / "s"), "loihi2": _compile_loihi2(root),
            "loihi2-conv": _compile_loihi2_conv(root)}
    inputs = {}
    for t, x in xs.items():
        inputs[t] = root / f"{t}_x.npy"
        np.save(inputs[t], x)
    return dirs, inputs


def test_every_target_has_at_least_ten_tamperings():
    counts = {t: sum(1 for c in CASES if c[0].split("-")[0] == t) for t in ("xylo", "speck", "loihi2")}
    assert min(counts.values()) >= 10, counts
    assert len({(c[0], c[1]) for c in CASES}) == len(CASES)


@pytest.mark.parametrize("target", ["xylo", "speck", "loihi2", "loihi2-conv"])
def test_untampered_folders_load(target, folders, tmp_path):
    dirs, inputs = folders
    r = CliRunner().invoke(main, ["simulate", str(dirs[target]), "--input", str(inputs[target]), "-o", str(tmp_path / "y.npy")])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("target,cid,fname,field,edit", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_tampered_folder_exits_2_naming_file_and_field(target, cid, fname, field, edit, folders, tmp_path):
    dirs, inputs = folders
    d = tmp_path / "dep"
    shutil.copytree(dirs[target], d)
    edit(d)
    y = tmp_path / "y.npy"
    r = CliRunner().invoke(main, ["simulate", str(d), "--input", str(inputs[target]), "-o", str(y)])
    out = r.output
    assert r.exit_code == 2, (r.exit_code, out, r.exception)
    assert "Traceback" not in out and "internal error" not in out, out
    assert fname in out and field in out, out
    assert not y.exists()
