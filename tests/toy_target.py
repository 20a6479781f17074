"""A minimal target that proves the target contract: it quantizes Affine/Linear weights to its
4-bit format, counts neurons and inputs against its hw_config, simulates with the reference
simulator and exports one JSON file. Registered in-process by the tests, or through an entry
point by a fake installed distribution (test_registry.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nirdeploy.backend.report import FitReport, NodeUsage, Resource, Violation
from nirdeploy.backend.target import Artifact, CompileOptions, SimOutput, Target

HW_DIR = Path(__file__).parent / "data" / "toy_hw"


class ToyTarget(Target):
    name = "toy"
    description = "test target"
    supported_nodes = frozenset({"Input", "Output", "Affine", "Linear", "LIF", "CubaLIF", "NIRGraph"})
    hwconfig_dir = HW_DIR

    def check(self, graph, variant, options: CompileOptions) -> FitReport:
        from nirdeploy.graph.passes import normalize

        hw = self.hwconfig(variant)
        g = normalize(graph)
        rep = FitReport(self.name, variant, settings=options.to_dict())
        for n in g.nodes.values():
            if n.type not in self.supported_nodes:
                rep.violations.append(Violation("unsupported_node", f"{n.type} not supported", n.name, n.type, hint="use Affine and LIF"))
        neurons = sum(n.n_neurons for n in g.nodes.values() if n.type in ("LIF", "CubaLIF"))
        inputs = int(np.prod(g.inputs[0].output_shape))
        for name, used, key in (("neurons", neurons, "neurons"), ("inputs", inputs, "inputs")):
            rep.resources.append(Resource(name, used, hw.limit(key), name))
            if used > hw.limit(key):
                rep.violations.append(Violation(key, f"{name} {used} > {hw.limit(key)}", limit=hw.limit(key), actual=used, hint=f"use fewer {name}"))
        rep.nodes = [NodeUsage(n.name, n.type, {"neurons": n.n_neurons}) for n in g.nodes.values() if n.type in ("LIF", "CubaLIF")]
        return rep

    def compile(self, graph, variant, options) -> Artifact:
        from nirdeploy.graph.passes import normalize

        rep = self.check(graph, variant, options)
        g = normalize(graph)
        wf = self.hwconfig(variant).fmt("weight")
        for n in g.nodes.values():
            if n.type in ("Affine", "Linear"):
                w = n.params["weight"]
                s = wf.max / max(float(np.abs(w).max()), 1e-12)
                n.params["weight"] = wf.quantize(w, s) / s
        return Artifact(self.name, variant, rep, {"graph": g, "options": options},
                        tuple(g.inputs[0].output_shape), tuple(g.outputs[0].input_shape))

    def simulate(self, artifact, x, *, record=False, progress=None) -> SimOutput:
        from nirdeploy.sim.reference import simulate_reference

        p = artifact.payload
        o = p["options"]
        r = simulate_reference(p["graph"], x, o.dt, scheme=o.scheme, reset=o.reset, record=record)
        return SimOutput(r.output, r.states if record else {})

    def export(self, artifact, folder) -> list[str]:
        from nirdeploy.backend.folder import write_json
        from nirdeploy.graph.loading import write_nir

        write_nir(artifact.payload["graph"], Path(folder) / "toy_graph.nir")
        write_json(Path(folder) / "toy.json", {"variant": artifact.variant, "options": artifact.payload["options"].to_dict()})
        return ["toy.json", "toy_graph.nir"]

    def load(self, folder) -> Artifact:
        """The compiled-folder contract: the core has validated deployment.json; this target's
        own file is read through backend.folder with its schema, the report with read_report."""
        from nirdeploy.backend.compiled import read_report
        from nirdeploy.backend.folder import read_json
        from nirdeploy.graph.loading import load
        from nirdeploy.graph.passes import normalize

        folder = Path(folder)
        meta = read_json(folder / "toy.json", TOY_SCHEMA)
        rep = read_report(folder)
        o = meta["options"]
        opts = CompileOptions(dt=o["dt"], reset=o["reset"], scheme=o["scheme"])
        g = normalize(load(folder / "toy_graph.nir"))
        return Artifact(self.name, meta["variant"], rep, {"graph": g, "options": opts},
                        tuple(g.inputs[0].output_shape), tuple(g.outputs[0].input_shape))


def _schema():
    from nirdeploy.backend.compiled import SETTINGS_SCHEMA
    from nirdeploy.backend.folder import Schema, Str

    return Schema({"variant": Str(), "options": SETTINGS_SCHEMA})


TOY_SCHEMA = _schema()
