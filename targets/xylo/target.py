"""The Xylo target: check, compile, simulate, export, load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nirdeploy.errors import UsageError
from nirdeploy.graph.ir import Graph
from nirdeploy.backend.report import FitReport
from nirdeploy.backend.target import Artifact, CompileOptions, SimOutput, Target

from .config import XyloConfig
from .lower import SUPPORTED_NODES, THRESHOLD_TARGET, Lowered, lower

__all__ = ["XyloTarget"]

CONFIG_FILE = "xylo_config.npz"
META_FILE = "xylo_meta.json"
SPEC_FILE = "rockpool_spec.npz"
CALIBRATION_ROUNDS = 6


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
        hw = self.hwconfig(variant)
        low = lower(graph, hw, options)
        if options.calibration is not None and low.config is not None:
            low = self._calibrate(graph, hw, options, low)
        return low

    def _calibrate(self, graph, hw, options, low: Lowered) -> Lowered:
        """Halve the scale of every neuron whose Vmem or Isyn saturates on the sample input."""
        from .sim import simulate

        x = np.asarray(options.calibration)
        if x.ndim != 3 or x.shape[2] != low.config.n_in:
            raise UsageError(f"calibration input has shape {x.shape}; expected (batch, time, {low.config.n_in})")
        x = np.clip(x, 0, None).astype(np.int64)
        smax, smin = hw.fmt("state").max, hw.fmt("state").min
        n_hid = low.config.n_hidden
        target = np.full(n_hid + low.config.n_out, float(THRESHOLD_TARGET))
        history = []
        for _ in range(CALIBRATION_ROUNDS):
            st = simulate(low.config, hw, x, record=True).states
            sat_h = np.zeros(n_hid, bool)
            for k in ("Vmem", "Isyn", "Isyn2"):
                if k in st:
                    a = st[k]
                    sat_h |= ((a >= smax) | (a <= smin)).any(axis=(0, 1))
            sat_o = np.zeros(low.config.n_out, bool)
            for k in ("Vmem_out", "Isyn_out"):
                a = st[k]
                sat_o |= ((a >= smax) | (a <= smin)).any(axis=(0, 1))
            sat = np.concatenate([sat_h, sat_o])
            history.append(int(sat.sum()))
            if not sat.any():
                break
            target[sat] /= 2.0
            low = lower(graph, hw, options, threshold_target=target)
        else:
            st = simulate(low.config, hw, x, record=True).states
            history.append(int(sum(((st[k] >= smax) | (st[k] <= smin)).any(axis=(0, 1)).sum() for k in ("Vmem", "Isyn", "Vmem_out", "Isyn_out"))))
        low.report.details["calibration"] = {
            "samples": int(x.shape[0]),
            "steps": int(x.shape[1]),
            "saturating_neurons_per_round": history,
            "threshold_target_min": float(target.min()),
        }
        low.report.notes.append(
            f"calibration on {x.shape[0]} sample(s): saturating neurons per round {history}"
        )
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
        from .sim import simulate

        low: Lowered = artifact.payload
        if low.config is None:
            raise UsageError("this network did not lower onto Xylo; see its report")
        hw = self.hwconfig(artifact.variant)
        need_states = record or low.readout == "vmem"
        res = simulate(low.config, hw, np.asarray(x, dtype=np.int64), record=need_states, progress=progress)
        if low.readout == "vmem":
            out = res.states["Vmem_out"] / low.output_scale
        else:
            out = res.spikes_out
        return SimOutput(output=out, states=dict(res.states) if record else {})

    def export(self, artifact: Artifact, folder: Path) -> list[str]:
        low: Lowered = artifact.payload
        if low.config is None:
            raise UsageError("nothing to export: the network did not lower onto Xylo")
        folder = Path(folder)
        np.savez(folder / CONFIG_FILE, **low.config.to_arrays())
        spec = rockpool_spec(low.config, self.hwconfig(artifact.variant), artifact.report.settings["dt"])
        np.savez(folder / SPEC_FILE, **spec)
        meta = {
            "variant": artifact.variant,
            "input_shape": list(low.input_shape),
            "output_shape": list(low.output_shape),
            "latency_steps": low.latency_steps,
            "readout": low.readout,
            "output_scale": None if low.output_scale is None else np.asarray(low.output_scale).tolist(),
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2))
        return [CONFIG_FILE, SPEC_FILE, META_FILE]

    def load(self, folder: Path) -> Artifact:
        folder = Path(folder)
        try:
            meta = json.loads((folder / META_FILE).read_text())
            with np.load(folder / CONFIG_FILE, allow_pickle=False) as z:
                cfg = XyloConfig.from_arrays(z)
            report = FitReport.from_dict(json.loads((folder / "report.json").read_text()))
        except (OSError, ValueError, KeyError) as e:
            raise UsageError(f"{folder} is not a complete Xylo deployment: {e}") from None
        scale = None if meta["output_scale"] is None else np.asarray(meta["output_scale"], dtype=np.float64)
        low = Lowered(cfg, report, tuple(meta["input_shape"]), tuple(meta["output_shape"]), int(meta["latency_steps"]), meta["readout"], scale)
        return Artifact(self.name, meta["variant"], report, low, low.input_shape, low.output_shape, low.latency_steps)


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
