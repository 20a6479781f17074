"""The Xylo target: check, compile, simulate, export, load."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nirdeploy.errors import UsageError
from nirdeploy.graph.ir import Graph
from nirdeploy.backend.report import FitReport
from nirdeploy.backend.target import Artifact, CompileOptions, SimOutput, Target
from nirdeploy.sim.reference import ChipSemantics

from .calibrate import calibrate_xylo, skip
from .config import XyloConfig
from .cycles import real_time_rule
from .lower import SUPPORTED_NODES, Lowered, lower

__all__ = ["XyloTarget"]

CONFIG_FILE = "xylo_config.npz"
META_FILE = "xylo_meta.json"
SPEC_FILE = "rockpool_spec.npz"


class XyloTarget(Target):
    name = "xylo"
    description = "SynSense Xylo (Audio 2, Audio 3, IMU): one recurrent population of integer LIF neurons"
    supported_nodes = SUPPORTED_NODES

    def summary(self, variant: str) -> str:
        lim = self.hwconfig(variant).limits
        return (
            f"{lim['input_channels']} in / {lim['hidden_neurons']} hidden / {lim['output_neurons']} out, "
            f"{lim['synapses_per_hidden']} syn, fan-out {lim['max_fanout']}, int8 weights, int16 state"
        )

    # -- lowering ----------------------------------------------------------------------------------
    def _lower(self, graph: Graph, variant: str, options: CompileOptions) -> Lowered:
        """Lower; with sample input, calibrate (``options.calibration``) and/or measure fidelity
        (``options.sample``); then the real-time rule (with measured activity when there is a sample)."""
        hw = self.hwconfig(variant)
        low = lower(graph, hw, options)
        sample = options.calibration if options.calibration is not None else options.sample
        activity, steps = None, None
        if low.config is not None and sample is not None:
            x_ref, x_chip = _sample_input(sample, low, "--calibrate" if options.calibration is not None else "--sample")
            steps = int(x_chip.shape[1])
            if not low.report.fits:
                low.report.notes.append("sample input given, but the network does not fit: no calibration and no fidelity measurement")
                if options.calibration is not None:
                    skip(low, "the network does not fit this variant").add_to_report(low.report)
            else:
                from .fidelity import fidelity_report

                ref = _reference(graph, x_ref, options)
                # the chip's semantics (spiking rule, decays) do not depend on the scales calibration changes
                ref_chip = _reference(graph, x_ref, options, chip=xylo_chip_semantics(low.config, low.report, hw))
                if options.calibration is not None:
                    low, cal, res = calibrate_xylo(graph, hw, options, low, x_chip, ref, ref_chip_out=ref_chip)
                    cal.add_to_report(low.report)
                else:
                    from .sim import simulate

                    res = simulate(low.config, hw, x_chip, record=True)
                fid = fidelity_report(low, hw, low.report, x_chip, res, ref, ref_chip, measured_only=options.calibration is None)
                activity = fid["activity"]
        cfg = low.config if low.config is not None else low.checked_config  # (nodes looked through: checked, not built)
        if cfg is not None:
            hidden = ", ".join(n.node for n in low.report.nodes if n.usage.get("role") == "hidden")
            real_time_rule(cfg, hw, options.dt, low.report, activity=activity, steps=steps, node=hidden)
        return low

    # -- contract ----------------------------------------------------------------------------------
    def check(self, graph: Graph, variant: str, options: CompileOptions) -> FitReport:
        return self._lower(graph, variant, options).report

    def compile(self, graph: Graph, variant: str, options: CompileOptions) -> Artifact:
        low = self._lower(graph, variant, options)
        return Artifact(
            target=self.name,
            variant=variant,
            report=low.report,
            payload=low,
            input_shape=low.input_shape,
            output_shape=low.output_shape,
            latency_steps=low.latency_steps,
        )

    def simulate(self, artifact: Artifact, x: np.ndarray, *, record: bool = False, progress=None) -> SimOutput:
        from .sim import simulate  # looked up at call time (tests pause it there)

        low: Lowered = artifact.payload
        if low.config is None:
            raise UsageError("this network did not lower onto Xylo; see its report")
        hw = self.hwconfig(artifact.variant)
        need_states = record or low.readout == "vmem"
        x = np.asarray(x, dtype=np.int64)
        if x.ndim > 3:  # an N-d Input flattened before the first weights: the chip sees the flat vector
            x = x.reshape(x.shape[0], x.shape[1], -1)
        res = simulate(low.config, hw, x, record=need_states, progress=progress)
        if low.readout == "vmem":
            out = res.states["Vmem_out"] / low.output_scale
        else:
            out = res.spikes_out
        return SimOutput(output=out, states=dict(res.states) if record else {})

    def chip_semantics(self, artifact: Artifact) -> ChipSemantics | None:
        """Xylo's semantics for the reference simulator: hidden layers fire up to 31 spikes per step
        and outputs 1 (floor(v / threshold), subtractive reset), every decay is the chip's
        ``1 - 2**-dash``, input counts above 15 are dropped."""
        low: Lowered = artifact.payload
        if low.config is None:
            return None
        return xylo_chip_semantics(low.config, artifact.report, self.hwconfig(artifact.variant))

    def chip_model(self, artifact: Artifact, *, weights=None, **options):
        """Xylo's chip model in torch (:mod:`.torch_model`; imports torch)."""
        from .torch_model import build

        return build(self, artifact, weights, **options)

    def export(self, artifact: Artifact, folder: Path) -> list[str]:
        """Write xylo_config.npz (what ``load`` rebuilds the network from), rockpool_spec.npz
        (what Rockpool's XyloSim / samna take) and xylo_meta.json; returns their names."""
        from nirdeploy.backend.folder import write_json, write_npz

        low: Lowered = artifact.payload
        if low.config is None:
            raise UsageError("nothing to export: the network did not lower onto Xylo")
        folder = Path(folder)
        write_npz(folder / CONFIG_FILE, low.config.to_arrays())
        spec = rockpool_spec(low.config, self.hwconfig(artifact.variant), artifact.report.settings["dt"])
        write_npz(folder / SPEC_FILE, spec)
        meta = {
            "variant": artifact.variant,
            "input_shape": list(low.input_shape),
            "output_shape": list(low.output_shape),
            "latency_steps": low.latency_steps,
            "readout": low.readout,
            "output_scale": None if low.output_scale is None else np.asarray(low.output_scale, dtype=np.float64).reshape(-1).tolist(),
        }
        write_json(folder / META_FILE, meta)
        return [CONFIG_FILE, SPEC_FILE, META_FILE]

    def load(self, folder: Path) -> Artifact:
        """Rebuild the artifact from a compiled folder (the core has validated deployment.json).

        Every file is read through nirdeploy.backend.folder with its schema (:data:`META_SCHEMA`,
        :func:`config_specs`); array shapes must agree with each other, values must fit the
        variant's integer formats and sizes its limits. Raises DeploymentFolderError naming the
        file and key."""
        from nirdeploy.backend.compiled import read_report
        from nirdeploy.backend.folder import read_json, read_npz
        from nirdeploy.errors import DeploymentFolderError

        folder = Path(folder)
        mp, cp = folder / META_FILE, folder / CONFIG_FILE
        meta = read_json(mp, META_SCHEMA)
        if meta["variant"] not in self.variants():
            raise DeploymentFolderError(mp, "variant", f"{meta['variant']!r} is not a Xylo variant ({', '.join(self.variants())})")
        hw = self.hwconfig(meta["variant"])
        arrays = read_npz(cp, config_specs(hw))
        _check_config_shapes(arrays, hw, cp)
        cfg = XyloConfig.from_arrays(arrays)
        n_in, n_out = cfg.n_in, cfg.n_out
        if int(np.prod(meta["input_shape"])) != n_in:
            raise DeploymentFolderError(mp, "input_shape", f"{meta['input_shape']} does not match the {n_in} input channels of {CONFIG_FILE}")
        if int(np.prod(meta["output_shape"])) != n_out:
            raise DeploymentFolderError(mp, "output_shape", f"{meta['output_shape']} does not match the {n_out} output neurons of {CONFIG_FILE}")
        scale = meta["output_scale"]
        if meta["readout"] == "vmem":
            if scale is None or len(scale) != n_out:
                raise DeploymentFolderError(mp, "output_scale", f"a Vmem readout needs {n_out} positive scales, got {scale!r}")
            scale = np.asarray(scale, dtype=np.float64)
        elif scale is not None:
            raise DeploymentFolderError(mp, "output_scale", "is set, but the readout is spikes (scales belong to a Vmem readout)")
        if meta["latency_steps"] > cfg.n_hidden + 1:  # one step per hidden->hidden hop plus hidden->output
            raise DeploymentFolderError(mp, "latency_steps", f"{meta['latency_steps']} is more than {cfg.n_hidden} hidden neurons can "
                                        f"delay (at most {cfg.n_hidden + 1} steps)")
        report = read_report(folder)
        low = Lowered(cfg, report, tuple(meta["input_shape"]), tuple(meta["output_shape"]), int(meta["latency_steps"]), meta["readout"], scale)
        return Artifact(self.name, meta["variant"], report, low, low.input_shape, low.output_shape, low.latency_steps)


def _sample_input(sample, low: Lowered, flag: str) -> tuple[np.ndarray, np.ndarray]:
    """(reference input as given, chip input (batch, time, n_in) int64) from a sample array."""
    x = np.asarray(sample)
    want = tuple(low.input_shape)
    if x.ndim != 2 + len(want) or tuple(x.shape[2:]) != want or x.shape[0] < 1 or x.shape[1] < 1:
        raise UsageError(f"{flag} input has shape {x.shape}; expected (batch, time, {', '.join(map(str, want))})")
    if x.dtype.kind not in "biuf" or (x.dtype.kind == "f" and not np.all(np.isfinite(x))):
        raise UsageError(f"{flag} input must hold finite numbers (spike counts), got dtype {x.dtype}")
    if np.any(x < 0) or (x.dtype.kind == "f" and np.any(x != np.round(x))):
        raise UsageError(f"{flag} input must be non-negative integer spike counts")
    xi = x.astype(np.int64).reshape(x.shape[0], x.shape[1], -1)
    return x, xi


def _reference(graph, x, options: CompileOptions, chip: ChipSemantics | None = None) -> np.ndarray:
    """Reference outputs on ``x`` with the compile settings (or with the chip's semantics)."""
    from nirdeploy.sim.reference import simulate_reference

    reset = "subtract" if chip is not None else options.reset
    return simulate_reference(graph, x, options.dt, scheme=options.scheme, reset=reset, chip=chip).output


def xylo_chip_semantics(cfg: XyloConfig, report: FitReport, hw) -> ChipSemantics:
    """:class:`ChipSemantics` of a Xylo configuration, from the per-layer neuron ids and synapse
    kinds recorded in the report's nodes (so it works on a reloaded deployment too)."""
    sem = ChipSemantics(input_max=float(hw.limits["max_input_events_per_step"]),
                        description=f"Xylo ({hw.name}): hidden neurons fire floor(v/threshold) spikes, at most "
                                    f"{hw.limits['max_hidden_spikes_per_step']} per step, outputs at most {hw.limits['max_output_spikes_per_step']}, "
                                    "with subtractive reset; every decay is the chip's 1 - 2**-dash; states clamp at the int16 range "
                                    f"of the compiled scales; input counts above {hw.limits['max_input_events_per_step']} per step are dropped")

    def alpha(d):
        return 1.0 - 2.0 ** (-np.asarray(d, dtype=np.float64))

    spiking = report.details.get("readout", "spikes") == "spikes"
    q = report.details.get("quantization", {})
    smin, smax = float(hw.fmt("state").min), float(hw.fmt("state").max)

    def state_range(node, role, a, b, has_i):
        vs, is_ = q.get("v_scale", {}).get(role), q.get("i_scale", {}).get(role)
        if vs is None:
            return
        hi = smax / np.asarray(vs[a:b])
        if role == "output" and not spiking:  # a Vmem readout does not clamp at the maximum: it fires there (see the fidelity report)
            hi = np.full(hi.shape, np.inf)
        r = {"v": (smin / np.asarray(vs[a:b]), hi)}
        if has_i and is_ is not None:
            with np.errstate(divide="ignore"):
                isc = np.asarray(is_[a:b], dtype=np.float64)
                r["i"] = (np.where(isc > 0, smin / isc, -np.inf), np.where(isc > 0, smax / isc, np.inf))
        sem.state_range[node] = r

    for nu in report.nodes:
        u = nu.usage
        kinds = list(u.get("synapse_kinds", []))
        if u.get("role") == "hidden" and "hidden_ids" in u:
            a, b = int(u["hidden_ids"][0]), int(u["hidden_ids"][1]) + 1
            sem.spikes_per_step[nu.node] = int(hw.limits["max_hidden_spikes_per_step"])
            dm, syns = cfg.dash_mem[a:b], [cfg.dash_syn[a:b], cfg.dash_syn_2[a:b]]
            state_range(nu.node, "hidden", a, b, "own" in kinds)
        elif u.get("role") == "output":
            if spiking:
                sem.spikes_per_step[nu.node] = int(hw.limits["max_output_spikes_per_step"])
            dm, syns = cfg.dash_mem_out, [cfg.dash_syn_out]
            state_range(nu.node, "output", 0, cfg.n_out, "own" in kinds)
        else:
            continue
        sem.decay.setdefault(nu.node, {})["alpha_v"] = alpha(dm)
        for k, kind in enumerate(kinds[: len(syns)]):
            if kind == "own":
                sem.decay[nu.node]["alpha_i"] = alpha(syns[k])
            elif kind != "added":  # an LI node acting as this layer's synapse
                sem.decay.setdefault(kind, {})["alpha_v"] = alpha(syns[k])
    return sem


def _schemas():
    from nirdeploy.backend.folder import Float, Int, ListOf, Nullable, Schema, Str

    shape = ListOf(Int(1, 2**31 - 1), min_len=1, max_len=8)
    return Schema(
        {
            "variant": Str(max_len=100),
            "input_shape": shape,
            "output_shape": shape,
            "latency_steps": Int(0, 2**31 - 1),
            "readout": Str(("spikes", "vmem")),
            "output_scale": Nullable(ListOf(Float(0.0, exclusive_min=True), max_len=2**16)),
        }
    )


#: the schema of xylo_meta.json
META_SCHEMA = _schemas()


def config_specs(hw) -> dict:
    """ArraySpecs of xylo_config.npz for one variant: dtype kinds, dimensions, value ranges from
    the variant's integer formats (hw_configs/xylo-*.toml)."""
    from nirdeploy.backend.folder import ArraySpec

    def within(fmt_name: str):
        f = hw.fmt(fmt_name)

        def check(a):
            if a.size and (a.min() < f.min or a.max() > f.max):
                return f"holds values outside the {fmt_name} format {f.min}..{f.max} (found {a.min()}..{a.max()})"
            return None

        return check

    ints = "iu"
    return {
        "weights_in": ArraySpec(ints, 3, within("weight")),
        "weights_rec": ArraySpec(ints, 3, within("weight")),
        "weights_out": ArraySpec(ints, 2, within("weight")),
        "dash_mem": ArraySpec(ints, 1, within("dash")),
        "dash_syn": ArraySpec(ints, 1, within("dash")),
        "dash_syn_2": ArraySpec(ints, 1, within("dash")),
        "dash_mem_out": ArraySpec(ints, 1, within("dash")),
        "dash_syn_out": ArraySpec(ints, 1, within("dash")),
        "threshold": ArraySpec(ints, 1, within("threshold")),
        "threshold_out": ArraySpec(ints, 1, within("threshold")),
        "bias": ArraySpec(ints, 1, within("bias")),
        "bias_out": ArraySpec(ints, 1, within("bias")),
        "weight_shift_in": ArraySpec(ints, 0, within("weight_shift")),
        "weight_shift_rec": ArraySpec(ints, 0, within("weight_shift")),
        "weight_shift_out": ArraySpec(ints, 0, within("weight_shift")),
        "bias_enable": ArraySpec("biu", 0, lambda a: None if int(a) in (0, 1) else "must be 0 or 1"),
        "aliases": ArraySpec(ints, 1),
    }


def _check_config_shapes(a: dict, hw, path: Path) -> None:
    """Cross-array shapes of xylo_config.npz, and sizes within the variant's limits."""
    from nirdeploy.errors import DeploymentFolderError

    lim = hw.limits
    n_in, n_hid, n_syn = a["weights_in"].shape
    n_out = a["weights_out"].shape[1]
    for key, n, limit in (("weights_in", n_in, "input_channels"), ("weights_in", n_hid, "hidden_neurons"),
                          ("weights_out", n_out, "output_neurons")):
        if not 1 <= n <= int(lim[limit]):
            raise DeploymentFolderError(path, key, f"has {n} {limit.replace('_', ' ')}; {hw.name} has 1..{lim[limit]}")
    if not 1 <= n_syn <= int(lim.get("synapses_per_hidden", 2)):
        raise DeploymentFolderError(path, "weights_in", f"has {n_syn} synapses per neuron; {hw.name} has {lim.get('synapses_per_hidden', 2)}")
    want = {
        "weights_rec": (n_hid, n_hid, n_syn),
        "weights_out": (n_hid, n_out),
        "dash_mem": (n_hid,), "dash_syn": (n_hid,), "dash_syn_2": (n_hid,), "threshold": (n_hid,), "bias": (n_hid,),
        "aliases": (n_hid,),
        "dash_mem_out": (n_out,), "dash_syn_out": (n_out,), "threshold_out": (n_out,), "bias_out": (n_out,),
    }
    for key, shape in want.items():
        if tuple(a[key].shape) != shape:
            raise DeploymentFolderError(path, key, f"has shape {tuple(a[key].shape)}; weights_in and weights_out imply {shape}")
    al = a["aliases"]
    if al.size and (al.min() < -1 or al.max() >= n_hid):
        raise DeploymentFolderError(path, "aliases", f"holds neuron indices outside -1..{n_hid - 1}")
    tmax = hw.fmt("threshold").max
    for key in ("threshold", "threshold_out"):  # the compiler writes 1..max (a zero fires every step, a negative one wraps Vmem)
        if a[key].size and a[key].min() < 1:
            raise DeploymentFolderError(path, key, f"holds {int(a[key].min())}; Xylo thresholds here are 1..{tmax}")
    biased = bool(np.any(a["bias"]) or np.any(a["bias_out"]))
    if biased and not int(a["bias_enable"]):
        raise DeploymentFolderError(path, "bias", "is non-zero but bias_enable is 0 (the chip would ignore it)")
    if int(a["bias_enable"]) and not lim.get("bias", False):
        raise DeploymentFolderError(path, "bias_enable", f"is 1, but {hw.name} has no neuron bias")


def rockpool_spec(cfg: XyloConfig, hw, dt: float) -> dict[str, np.ndarray]:
    """The arrays and scalars ``XyloSim.from_specification`` takes for this variant.

    Audio 2 takes full-width matrices; Audio 3 and IMU take ``weights_in`` cut to the input-
    expanded neurons (the first IEN hidden neurons) and ``weights_out`` cut to the output-expanded
    ones (the last OEN), as Rockpool's mapper emits them."""
    w_in, w_out = cfg.weights_in, cfg.weights_out
    if hw.limits["input_window"] < hw.limits["hidden_neurons"]:
        cols = np.nonzero((w_in != 0).any(axis=(0, 2)))[0]
        ien = int(cols.max() + 1) if cols.size else 1
        w_in = w_in[:, :ien, :]
        rows = np.nonzero((w_out != 0).any(axis=1))[0]
        oen = int(cfg.n_hidden - rows.min()) if rows.size else 1
        w_out = w_out[cfg.n_hidden - oen :, :]
    return {
        "weights_in": w_in.astype(np.int8),
        "weights_rec": cfg.weights_rec.astype(np.int8),
        "weights_out": w_out.astype(np.int8),
        "dash_mem": cfg.dash_mem.astype(np.int64),
        "dash_mem_out": cfg.dash_mem_out.astype(np.int64),
        "dash_syn": cfg.dash_syn.astype(np.int64),
        "dash_syn_2": cfg.dash_syn_2.astype(np.int64),
        "dash_syn_out": cfg.dash_syn_out.astype(np.int64),
        "threshold": cfg.threshold.astype(np.int64),
        "threshold_out": cfg.threshold_out.astype(np.int64),
        "bias": cfg.bias.astype(np.int64),
        "bias_out": cfg.bias_out.astype(np.int64),
        "weight_shift_in": np.int64(cfg.weight_shift_in),
        "weight_shift_rec": np.int64(cfg.weight_shift_rec),
        "weight_shift_out": np.int64(cfg.weight_shift_out),
        "dt": np.float64(dt),
    }
