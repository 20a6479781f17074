"""End-to-end accuracy on Xylo: a recurrent snnTorch network trained on event digits, exported with
snnTorch's own NIR exporter, compiled by nirdeploy, and evaluated four ways on the test set:

1. float: the trained snnTorch network itself;
2. reference: nirdeploy's float64 reference simulation of the exported NIR graph (NIR semantics,
   the compiled reset);
3. reference with chip semantics: the same with Xylo's spiking rule (floor(v / threshold) spikes,
   at most 31 per hidden step and 1 per output step, subtractive reset), the chip's effective
   time constants (decays 1 - 2**-dash), its int16 state range at the compiled scales, and input
   clipping (15 events); also shown without the state range;
4. chip: nirdeploy's bit-accurate Xylo simulation of the compiled integer network.

(3) predicts (4): the script checks that they agree within 3 points (exit status 1 if not). It
also prints the multi-spike share the fidelity report measures, and, with ``--penalty``, trains
with a penalty on membrane potential above twice the threshold, which keeps neurons to about one
spike per step so that the chip follows the float network.

Data: ``nirdeploy.evaluation.datasets.digits_events`` (scikit-learn's bundled 8x8 digits as a
16-channel ON/OFF column scan; no download). Network (ours, not the one in issue 7): 16 inputs
-> 64 recurrent CubaLIF (snnTorch RSynaptic) -> 10 CubaLIF outputs, spike-count readout,
beta 0.9 / alpha 0.8 per neuron, subtractive reset applied in the same step as the spike (the
reference's and the chip's order; the training loop is written out with snnTorch's parameters and
surrogate spike because snnTorch 1.0.0's ``reset_delay=False`` returns the membrane before the
reset). Export follows ``shared/chips/nir.md``: per-neuron beta
and threshold tensors, ``export_to_nir(..., ignore_dims=[0])``; the recurrent Linear's bias is
frozen at 0 (Xylo weights have no bias).

Needs: torch==2.13.0 (CPU), snntorch==1.0.0, nir==1.0.8, nirtorch==2.6, scikit-learn.

    python benchmarks/xylo_digits_accuracy.py                 # about 2-4 min on 2 CPU cores
    python benchmarks/xylo_digits_accuracy.py --penalty 0.5   # with the membrane penalty
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def build(n_in, n_hid, n_out, beta, alpha, seed):
    import snntorch as snn
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(n_in, n_hid, bias=False)
            self.lif1 = snn.RSynaptic(alpha=torch.full((n_hid,), alpha), beta=torch.full((n_hid,), beta), linear_features=n_hid,
                                      threshold=torch.ones(n_hid), reset_mechanism="subtract")
            self.fc2 = nn.Linear(n_hid, n_out, bias=False)
            self.lif2 = snn.Synaptic(alpha=torch.full((n_out,), alpha), beta=torch.full((n_out,), beta), threshold=torch.ones(n_out),
                                     reset_mechanism="subtract")
            with torch.no_grad():
                self.lif1.recurrent.bias.zero_()
                self.lif1.recurrent.weight.mul_(0.5)
            self.lif1.recurrent.bias.requires_grad_(False)

        def forward(self, x):  # x: (time, batch, n_in) -> output spikes and membranes over time
            # The update order of NIR's CubaLIF with snnTorch's encoding, which is also Xylo's:
            # i = alpha i + input; v = beta v + i; spike if v > threshold; v -= threshold at once.
            # (snnTorch 1.0.0's own reset_delay=False path returns the membrane before the reset,
            # so the loop is written out here with snnTorch's parameters and surrogate spike.)
            B = x.shape[1]
            syn1 = mem1 = spk1 = torch.zeros(B, n_hid)
            syn2 = mem2 = torch.zeros(B, n_out)
            out, mems = [], []
            for t in range(x.shape[0]):
                syn1 = self.lif1.alpha * syn1 + self.fc1(x[t]) + self.lif1.recurrent(spk1)
                mem1 = self.lif1.beta * mem1 + syn1
                spk1 = self.lif1.fire(mem1)
                mems_t = mem1
                mem1 = mem1 - spk1.detach() * self.lif1.threshold
                syn2 = self.lif2.alpha * syn2 + self.fc2(spk1)
                mem2 = self.lif2.beta * mem2 + syn2
                spk2 = self.lif2.fire(mem2)
                mems.append(torch.cat([mems_t, mem2], dim=1))
                mem2 = mem2 - spk2.detach() * self.lif2.threshold
                out.append(spk2)
            return torch.stack(out), torch.stack(mems)

    return Net()


def train(net, x, y, epochs, lr, penalty, seed, batch=64):
    import torch

    torch.manual_seed(seed)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    xt = torch.tensor(x, dtype=torch.float32).transpose(0, 1)  # (time, n, ch)
    yt = torch.tensor(y)
    ce = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    for ep in range(epochs):
        order = rng.permutation(len(y))
        tot = 0.0
        for i in range(0, len(y), batch):
            idx = torch.tensor(order[i:i + batch])
            spk, mem = net(xt[:, idx])
            loss = ce(spk.sum(0), yt[idx])
            if penalty:
                loss = loss + penalty * torch.relu(mem - 2.0).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
        if ep % 5 == 4 or ep == epochs - 1:
            print(f"  epoch {ep + 1}/{epochs}: loss {tot / len(y):.4f}", flush=True)


def float_outputs(net, x):
    import torch

    with torch.no_grad():
        spk, _ = net(torch.tensor(x, dtype=torch.float32).transpose(0, 1))
    return spk.transpose(0, 1).numpy()


def export(net, n_in, path):
    """snnTorch's exporter traces modules called in a step-wise forward: a Sequential of the same
    layers (init_hidden copies with the trained parameters) exports as
    Input -> Linear -> CubaLIF (+ w_rec) -> Linear -> CubaLIF -> Output."""
    import nir
    import snntorch as snn
    import torch
    from snntorch.export_nir import export_to_nir
    from torch import nn

    l1, l2 = net.lif1, net.lif2
    h1 = snn.RSynaptic(alpha=l1.alpha.clone(), beta=l1.beta.clone(), linear_features=l1.linear_features, threshold=l1.threshold.clone(),
                       reset_mechanism="subtract", init_hidden=True)
    h1.recurrent.load_state_dict(l1.recurrent.state_dict())
    h2 = snn.Synaptic(alpha=l2.alpha.clone(), beta=l2.beta.clone(), threshold=l2.threshold.clone(), reset_mechanism="subtract",
                      init_hidden=True, output=True)
    seq = nn.Sequential(net.fc1, h1, net.fc2, h2)
    g = export_to_nir(seq.cpu(), torch.zeros(1, n_in), ignore_dims=[0])
    nir.write(str(path), g)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--penalty", type=float, default=0.0, help="weight of the membrane penalty relu(v - 2 threshold)^2 (0: none)")
    ap.add_argument("--variant", default="audio3", help="audio3: 32 outputs (Audio 2 has 8)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", default=None, help="also keep the exported .nir here")
    args = ap.parse_args(argv)
    try:
        import torch
        torch.set_num_threads(2)
    except ImportError:
        print("needs torch==2.13.0 (CPU), snntorch==1.0.0, nirtorch==2.6, nir==1.0.8", file=sys.stderr)
        return 2
    import nirdeploy
    from nirdeploy.evaluation.compare import accuracy
    from nirdeploy.evaluation.datasets import digits_events

    ds = digits_events(args.classes, seed=args.seed)
    print(f"data: {ds.description}\n  train {ds.x_train.shape}, test {ds.x_test.shape}")
    net = build(16, args.hidden, args.classes, 0.9, 0.8, args.seed)
    t0 = time.time()
    train(net, ds.x_train, ds.y_train, args.epochs, args.lr, args.penalty, args.seed)
    print(f"trained in {time.time() - t0:.0f} s")
    y_float = float_outputs(net, ds.x_test)
    acc_float = accuracy(y_float, ds.y_test)["accuracy"]

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.save) if args.save else Path(tmp) / "digits_rsnn.nir"
        export(net, 16, path)
        dep = nirdeploy.compile(str(path), target=f"xylo:{args.variant}", dt=1e-4, reset="subtract", sample=ds.x_test[:64])
        if not dep.fits:
            print(dep.report.render())
            return 1
        t1 = time.time()
        ev = dep.evaluate(ds.x_test, ds.y_test)
        t_eval = time.time() - t1
        # ablation: the chip semantics without the int16 state range (spiking rule and time constants only)
        from dataclasses import replace

        from nirdeploy.sim.reference import simulate_reference

        sem = replace(dep.chip_semantics(), state_range={})
        y_sem2 = simulate_reference(dep.source_graph(), ds.x_test, 1e-4, chip=sem).output
        L = ev["latency_steps"]
        a_sem2 = accuracy(y_sem2, ds.y_test, "spikes", 0, ds.x_test.shape[1] - L)["accuracy"]
    fid = dep.report.details["fidelity"]
    multi = {k: v["multi_spike_share"] for k, v in fid["layers"].items() if "multi_spike_share" in v}
    a_ref, a_sem, a_chip = ev["reference"]["accuracy"], ev["reference_chip_semantics"]["accuracy"], ev["chip"]["accuracy"]
    warnings = sorted({v.rule for v in dep.report.warnings})
    print(f"\nexported {path.name}; compiled for xylo:{args.variant}: {'FITS' if dep.fits else 'DOES NOT FIT'}; warnings: {', '.join(warnings) or '-'}")
    print(f"fidelity on 64 test samples: multi-spike share {', '.join(f'{k} {100 * v:.1f} %' for k, v in multi.items())}; "
          f"predicted agreement {100 * (fid['predicted_agreement'] or 0):.1f} %")
    print(f"\naccuracy on {ds.y_test.size} test samples (readout: spike-count argmax; chip read {ev['latency_steps']} step later):")
    print(f"  snnTorch float                              {100 * acc_float:6.1f} %")
    print(f"  nirdeploy reference (NIR semantics)         {100 * a_ref:6.1f} %")
    print(f"  reference, chip spiking rule + effective tau {100 * a_sem2:5.1f} %   (no state range)")
    print(f"  reference with chip semantics               {100 * a_sem:6.1f} %   (+ int16 state range at the compiled scales)")
    print(f"  Xylo bit-accurate simulation                {100 * a_chip:6.1f} %   (silent samples {ev['chip']['silent_samples']})")
    print(f"  chip vs reference decisions agree in {100 * ev['agreement']['decision_agreement']:.1f} %; "
          f"chip vs chip-semantics reference in {100 * ev['agreement_chip_semantics']:.1f} %  (evaluation {t_eval:.1f} s)")
    gap = abs(a_chip - a_sem) * 100
    ok = gap <= 3.0
    print(f"\nchip-semantics reference vs chip: {gap:.1f} points -> {'within' if ok else 'NOT within'} 3 points")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
