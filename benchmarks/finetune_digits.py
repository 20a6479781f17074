"""Chip-aware fine-tuning on the event digits: float model vs the chip before and after
``nirdeploy.finetune``, on the held-out test set, for one target.

* ``xylo:*`` and ``loihi2``: the recurrent snnTorch network of ``xylo_digits_accuracy.py``
  (16 -> 64 recurrent CubaLIF -> 10 CubaLIF, subtractive reset, trained the usual way: no
  membrane penalty), exported with snnTorch's exporter; column-scan digits (16 channels).
* ``speck``: a convolutional IF network without MaxPool (2x10x10 saccade frames -> Conv 3x3 8 ->
  IF -> SumPool 2 -> Conv 3x3 16 -> IF -> SumPool 2 -> Flatten -> Linear 10 -> IF), built here and
  trained with ``nirdeploy.finetune(mode="float")`` (the reference semantics: one spike per step,
  subtractive reset) from a seeded random initialisation.

Then the compiled network is simulated bit-accurately on the test set ("chip before"), fine-tuned
with ``nirdeploy.finetune`` on the training set (chip model, membrane penalty) and simulated again
("chip after"). "float" is nirdeploy's float64 reference of the graph with the compile settings;
every accuracy uses the core's readout (spike-count argmax, silent samples wrong), the chip read
``latency`` steps later. Prints one table and, for Xylo, the multi-spike share of hidden firing.

    python benchmarks/finetune_digits.py --target xylo:audio3
    python benchmarks/finetune_digits.py --target loihi2
    python benchmarks/finetune_digits.py --target speck

Needs torch==2.13.0 (CPU), snntorch==1.0.0, nir==1.0.8, nirtorch==2.6, scikit-learn.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def cnn_graph(seed: int, in_shape=(2, 10, 10), n_out: int = 10):
    from nirdeploy.graph.ir import Graph, Node

    rng = np.random.default_rng(seed)

    def conv(cin, cout):
        return Node("", "Conv2d", {"weight": rng.normal(0, 1.5 / np.sqrt(cin * 9), (cout, cin, 3, 3)), "bias": np.zeros(cout),
                                   "stride": (1, 1), "padding": (1, 1), "dilation": (1, 1), "groups": 1})

    def iff(shape):
        return Node("", "IF", {"r": np.ones(shape), "v_threshold": np.ones(shape), "v_reset": np.zeros(shape)})

    c, h, w = in_shape
    spec = [("input", Node("", "Input", {"shape": in_shape})), ("conv1", conv(c, 8)), ("if1", iff((8, h, w))),
            ("pool1", Node("", "SumPool2d", {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0)})),
            ("conv2", conv(8, 16)), ("if2", iff((16, h // 2, w // 2))),
            ("pool2", Node("", "SumPool2d", {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0)})),
            ("flat", Node("", "Flatten", {"start_dim": 0, "end_dim": -1})),
            ("fc", Node("", "Linear", {"weight": rng.normal(0, 2.0 / np.sqrt(16 * (h // 4) * (w // 4)), (n_out, 16 * (h // 4) * (w // 4)))})),
            ("if3", iff((n_out,))), ("output", Node("", "Output", {"shape": (n_out,)}))]
    nodes = {}
    for name, n in spec:
        n.name = name
        nodes[name] = n
    names = [s[0] for s in spec]
    return Graph(nodes, list(zip(names[:-1], names[1:])))


def multi_spike_share(dep, x) -> float | None:
    st = dep.simulate(x, record=True).states
    s = st.get("Spikes")
    if s is None:
        return None
    fired = s > 0
    return float((s > 1).sum() / max(int(fired.sum()), 1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="xylo:audio3")
    ap.add_argument("--float-epochs", type=int, default=None, help="float training epochs (default 40 recurrent, 15 CNN)")
    ap.add_argument("--epochs", type=int, default=8, help="chip fine-tuning epochs")
    ap.add_argument("--lr", type=float, default=None, help="chip fine-tuning learning rate (default 2e-3)")
    ap.add_argument("--penalty", type=float, default=0.5, help="membrane penalty of the chip fine-tuning")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--train-limit", type=int, default=None, help="use only this many training samples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-dir", default=None, help="keep the graphs (before/after) here")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    import nirdeploy
    from nirdeploy.evaluation.datasets import digits_events, digits_frames

    name = args.target.partition(":")[0]
    t0 = time.time()
    out = Path(args.save_dir) if args.save_dir else Path(tempfile.mkdtemp(prefix="finetune_digits_"))
    out.mkdir(parents=True, exist_ok=True)
    if name == "speck":
        ds = digits_frames(10, seed=args.seed)
        dt, reset = 1.0, "subtract"
        n_tr = args.train_limit or ds.y_train.size
        res0 = nirdeploy.finetune(cnn_graph(args.seed), args.target, ds.x_train[:n_tr], ds.y_train[:n_tr], mode="float", dt=dt, reset=reset,
                                  epochs=args.float_epochs or 15, lr=5e-3, batch_size=args.batch_size, seed=args.seed,
                                  x_val=ds.x_test, y_val=ds.y_test)
        graph = res0.graph
        print(f"float training (nirdeploy.finetune mode=float): {res0.history[-1]}  ({time.time() - t0:.0f} s)")
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from xylo_digits_accuracy import build, export, train

        ds = digits_events(10, seed=args.seed)
        dt, reset = 1e-4, "subtract"
        n_tr = args.train_limit or ds.y_train.size
        net = build(16, 64, 10, 0.9, 0.8, args.seed)
        train(net, ds.x_train[:n_tr], ds.y_train[:n_tr], args.float_epochs or 40, 5e-3, 0.0, args.seed)
        export(net, 16, out / "float.nir")
        graph = nirdeploy.load_graph(out / "float.nir")
        print(f"float training (snnTorch, no penalty): {time.time() - t0:.0f} s")
    print(f"data: {ds.description}")
    t1 = time.time()
    res = nirdeploy.finetune(graph, args.target, ds.x_train[:n_tr], ds.y_train[:n_tr], dt=dt, reset=reset, epochs=args.epochs,
                             lr=args.lr or 2e-3, batch_size=args.batch_size, membrane_penalty=args.penalty, seed=args.seed,
                             x_val=ds.x_test, y_val=ds.y_test)
    t_ft = time.time() - t1
    nirdeploy.graph.loading.save_nir(res.graph, out / "finetuned.nir", force=True)  # a rerun with --save-dir replaces its own file
    dep0 = nirdeploy.compile(graph, target=args.target, dt=dt, reset=reset)
    ms0, ms1 = multi_spike_share(dep0, ds.x_test), multi_spike_share(res.deployment, ds.x_test)
    b, a = res.before, res.after
    f0, f1 = b["float"]["accuracy"], a["float"]["accuracy"]
    c0, c1 = b["chip"]["accuracy"], a["chip"]["accuracy"]
    print()
    for h in res.history:
        print(f"  chip epoch {h['epoch']}: loss {h['loss']:.4f}, penalty {h['penalty']:.4f}, train accuracy {100 * h['train_accuracy']:.1f} %")
    print(f"\n{args.target}: test set {ds.y_test.size} samples; fine-tuning {args.epochs} epochs on {n_tr} samples, penalty {args.penalty}, "
          f"{t_ft:.0f} s; graphs in {out}")
    print(f"  {'':28s} {'before':>8s} {'after':>8s}")
    print(f"  {'float reference':28s} {100 * f0:7.1f}% {100 * f1:7.1f}%")
    print(f"  {'chip (bit-accurate sim)':28s} {100 * c0:7.1f}% {100 * c1:7.1f}%")
    print(f"  {'points lost (float - chip)':28s} {100 * (f0 - c0):7.1f}  {100 * (f1 - c1):7.1f}")
    print(f"  {'chip vs the original float':28s} {100 * (f0 - c0):7.1f}  {100 * (f0 - c1):7.1f}")
    if ms0 is not None:
        print(f"  {'multi-spike share (hidden)':28s} {100 * ms0:7.1f}% {100 * ms1:7.1f}%")
    print(f"  silent chip samples: {b['chip']['silent_samples']} -> {a['chip']['silent_samples']}; total {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
