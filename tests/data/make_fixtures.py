"""Write the small NIR fixture files in this folder with an OLD nir (1.0.4).

Run with a separate environment, never the project's venv:

    python3.11 -m venv /tmp/nir104
    /tmp/nir104/bin/pip install "nir==1.0.4"
    /tmp/nir104/bin/python tests/data/make_fixtures.py tests/data

nir 1.0.4 has no ``v_reset`` on IF/LIF/CubaLIF, no ``CubaLI``, no type check in the
NIRGraph constructor and writes uncompressed datasets; its root ``version`` dataset says 1.0.4.
The graphs are deterministic (fixed seed) so the tests can recompute the expected values.
"""

import sys
from pathlib import Path

import nir
import numpy as np

assert nir.version == "1.0.4", nir.version


def main(out: Path) -> None:
    rng = np.random.default_rng(1234)
    f32 = np.float32

    # 1. Input -> Affine -> LIF -> Output
    g = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([3])}),
            "fc": nir.Affine(weight=rng.normal(size=(4, 3)).astype(f32), bias=np.arange(4, dtype=f32)),
            "lif": nir.LIF(
                tau=np.full(4, 1e-3), r=np.full(4, 10.0), v_leak=np.zeros(4), v_threshold=np.ones(4)
            ),
            "output": nir.Output(output_type={"output": np.array([4])}),
        },
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")],
    )
    nir.write(out / "nir104_lif.nir", g)

    # 2. CNN with a NON-square kernel: Conv2d -> IF -> SumPool2d -> Flatten -> Linear -> LI
    #    input (2, 9, 11); kernel (3, 5); stride (2, 1); padding (1, 2); dilation (1, 2)
    #    -> H = (9 + 2 - 2 - 1)//2 + 1 = 5, W = (11 + 4 - 8 - 1)//1 + 1 = 7 -> (4, 5, 7)
    #    SumPool2d k=(1, 2) s=(1, 2) -> (4, 5, 3); Flatten(start_dim=0) -> 60; Linear -> 5
    g = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2, 9, 11])}),
            "conv": nir.Conv2d(
                input_shape=(9, 11),
                weight=rng.normal(size=(4, 2, 3, 5)).astype(f32),
                stride=(2, 1),
                padding=(1, 2),
                dilation=(1, 2),
                groups=1,
                bias=np.zeros(4, dtype=f32),
            ),
            "if": nir.IF(r=np.ones((4, 5, 7)), v_threshold=np.ones((4, 5, 7))),
            "pool": nir.SumPool2d(kernel_size=np.array([1, 2]), stride=np.array([1, 2]), padding=np.array([0, 0])),
            "flat": nir.Flatten(input_type={"input": np.array([4, 5, 3])}, start_dim=0, end_dim=-1),
            "fc": nir.Linear(weight=rng.normal(size=(5, 60)).astype(f32)),
            "li": nir.LI(tau=np.full(5, 2e-3), r=np.ones(5), v_leak=np.zeros(5)),
            "output": nir.Output(output_type={"output": np.array([5])}),
        },
        edges=[("input", "conv"), ("conv", "if"), ("if", "pool"), ("pool", "flat"), ("flat", "fc"),
               ("fc", "li"), ("li", "output")],
    )
    nir.write(out / "nir104_cnn.nir", g)

    # 3. A NESTED recurrent subgraph, the snnTorch RSynaptic layout:
    #    input -> fc1 -> lif1{input -> lif <-> w_rec, lif -> output} -> fc2 -> lif2 -> output
    n_in, n_hid, n_out = 3, 4, 2
    cuba = lambda n: dict(  # noqa: E731
        tau_syn=np.full(n, 2e-4), tau_mem=np.full(n, 1e-3), r=np.full(n, 10.0), v_leak=np.zeros(n),
        v_threshold=np.ones(n), w_in=np.full(n, 2.0),
    )
    sub = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([n_hid])}),
            "lif": nir.CubaLIF(**cuba(n_hid)),
            "w_rec": nir.Linear(weight=rng.normal(size=(n_hid, n_hid)).astype(f32)),
            "output": nir.Output(output_type={"output": np.array([n_hid])}),
        },
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
    )
    g = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([n_in])}),
            "fc1": nir.Linear(weight=rng.normal(size=(n_hid, n_in)).astype(f32)),
            "lif1": sub,
            "fc2": nir.Linear(weight=rng.normal(size=(n_out, n_hid)).astype(f32)),
            "lif2": nir.CubaLIF(**cuba(n_out)),
            "output": nir.Output(output_type={"output": np.array([n_out])}),
        },
        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")],
    )
    nir.write(out / "nir104_rnn_nested.nir", g)

    # 4. The elementwise primitives: Scale, Delay, I, Threshold, with graph metadata
    g = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2])}),
            "scale": nir.Scale(scale=np.array([0.5, 2.0])),
            "delay": nir.Delay(delay=np.array([1e-3, 2e-3])),
            "integ": nir.I(r=np.array([1.0, 1.0])),
            "thr": nir.Threshold(threshold=np.array([0.5, 0.5])),
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("input", "scale"), ("scale", "delay"), ("delay", "integ"), ("integ", "thr"), ("thr", "output")],
        metadata={"source": "make_fixtures.py"},
    )
    nir.write(out / "nir104_elementwise.nir", g)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent))
