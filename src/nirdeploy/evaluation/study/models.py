"""The study's two snnTorch networks and their training loop (torch and snnTorch imported here
only; ``nirdeploy.evaluation.study`` imports this module when it trains).

* :func:`build_rsnn` - the recurrent net for Xylo and Loihi 2: ``Linear(16, H) -> RLeaky(H)
  (all-to-all recurrence) -> Linear(H, classes) -> Leaky(classes)``, subtractive reset in the
  step of the spike (``reset_delay=False``), no biases (Xylo has none on its weights; snnTorch's
  recurrent bias is zeroed and frozen), one fixed ``beta`` that Xylo (``1 - 2**-dash``) and
  Loihi 2 (``1 - dv / 4096``) represent exactly.
* :func:`build_cnn` - the convolutional net for Speck and Loihi 2, without MaxPool:
  ``Conv2d -> IF -> AvgPool2d(2) -> Conv2d -> IF -> Flatten -> Linear -> IF`` (snnTorch
  ``Leaky(beta=1)`` is an integrate-and-fire neuron), reset to zero (Speck's
  ``return_to_zero``, Loihi 2's reset, Norse's IAF), no biases.
* :func:`train` - backpropagation through time of snnTorch's own forward (the model a user
  would train), cross-entropy on the output spike counts, plus an optional **membrane
  penalty** ``penalty * mean(relu(v - 2 * threshold)**2)`` on the membrane each spike test sees:
  it keeps neurons below two thresholds, so the chip's multi-spike rule (Xylo fires
  ``floor(v / threshold)`` spikes) and snnTorch's late second subtraction both stay rare
  (``shared/chips/nir.md``, last section; issue 7).

Everything is seeded and runs on CPU; ``torch.set_num_threads`` is the caller's.
"""

from __future__ import annotations

import numpy as np

__all__ = ["build_rsnn", "build_cnn", "train", "run_counts", "SURROGATE_SLOPE"]

#: slope of snnTorch's fast-sigmoid surrogate gradient used by both networks
SURROGATE_SLOPE = 5.0


def _snn():
    from ...frontends._common import require
    from ...frontends.snntorch import PINS

    return require("snntorch", PINS, "snnTorch")


def build_rsnn(n_in: int, n_hidden: int, n_out: int, *, beta: float, seed: int):
    """The recurrent snnTorch network (see the module docstring); one step ``(batch, n_in)`` ->
    output spikes ``(batch, n_out)`` (``init_hidden=True`` layers)."""
    import torch

    snn = _snn()
    torch.manual_seed(seed)
    sg = snn.surrogate.fast_sigmoid(slope=SURROGATE_SLOPE)
    kw = dict(reset_mechanism="subtract", reset_delay=False, init_hidden=True, spike_grad=sg, learn_beta=False)
    net = torch.nn.Sequential(
        torch.nn.Linear(n_in, n_hidden, bias=False),
        snn.RLeaky(beta=torch.full((n_hidden,), float(beta)), linear_features=n_hidden, threshold=torch.ones(n_hidden), **kw),
        torch.nn.Linear(n_hidden, n_out, bias=False),
        snn.Leaky(beta=torch.full((n_out,), float(beta)), threshold=torch.ones(n_out), output=True, **kw),
    )
    rec = net[1].recurrent
    with torch.no_grad():
        rec.bias.zero_()
        rec.weight.mul_(0.5)
    rec.bias.requires_grad_(False)
    return net


def build_cnn(in_shape: tuple[int, int, int], channels: tuple[int, int], n_out: int, *, seed: int):
    """The convolutional snnTorch network (see the module docstring) for inputs ``in_shape``
    (channels, height, width); one step ``(batch, *in_shape)`` -> output spikes ``(batch, n_out)``."""
    import torch

    snn = _snn()
    torch.manual_seed(seed)
    nn = torch.nn
    sg = snn.surrogate.fast_sigmoid(slope=SURROGATE_SLOPE)

    def IF(**extra):
        return snn.Leaky(beta=1.0, reset_mechanism="zero", reset_delay=False, init_hidden=True, spike_grad=sg, **extra)

    c_in, h, w = (int(s) for s in in_shape)
    c1, c2 = (int(c) for c in channels)
    h2, w2 = (h // 2) - 2, (w // 2) - 2  # AvgPool2d(2), then a 3x3 convolution without padding
    return nn.Sequential(
        nn.Conv2d(c_in, c1, 3, padding=1, bias=False), IF(),
        nn.AvgPool2d(2),
        nn.Conv2d(c1, c2, 3, bias=False), IF(),
        nn.Flatten(),
        nn.Linear(c2 * h2 * w2, n_out, bias=False), IF(output=True),
    )


def _spiking_layers(net):
    snn = _snn()
    return [m for m in net.modules() if isinstance(m, snn.SpikingNeuron)]


class _MembraneTap:
    """Records the membrane every spike test of ``layers`` sees (the argument of ``fire``),
    for the penalty; removed again on exit so the trained model is the plain snnTorch model."""

    def __init__(self, layers):
        self.layers = layers
        self.values: list = []

    def __enter__(self):
        for layer in self.layers:
            fire = layer.fire

            def tapped(mem, _fire=fire):
                self.values.append(mem)
                return _fire(mem)

            layer.fire = tapped  # an instance attribute shadowing the method
        return self

    def __exit__(self, *exc):
        for layer in self.layers:
            layer.__dict__.pop("fire", None)
        return False


def _forward(net, x):
    """snnTorch's forward over time: ``x`` (batch, time, ...) tensor -> spikes (batch, time, n)."""
    import torch
    from snntorch import utils

    utils.reset(net)
    outs = []
    for t in range(x.shape[1]):
        y = net(x[:, t])
        outs.append(y[0] if isinstance(y, tuple) else y)
    return torch.stack(outs, 1)


def train(net, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, batch: int, penalty: float, seed: int,
          log=None) -> list[dict]:
    """Train ``net`` in place with Adam on ``x`` (n, time, *input) event counts and ``y`` (n,)
    labels; returns one ``{"epoch", "loss", "penalty", "seconds"}`` entry per epoch."""
    import time

    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    layers = _spiking_layers(net)
    history = []
    t0 = time.perf_counter()
    net.train()
    for ep in range(int(epochs)):
        order = rng.permutation(len(yt))
        tot = pen_tot = 0.0
        for i in range(0, len(order), batch):
            idx = torch.as_tensor(order[i:i + batch])
            with _MembraneTap(layers) as tap:
                spk = _forward(net, xt[idx])
            loss = torch.nn.functional.cross_entropy(spk.sum(1), yt[idx])
            pen = torch.zeros(())
            if penalty:
                v = torch.cat([m.reshape(m.shape[0], -1) for m in tap.values], 1)
                pen = torch.relu(v - 2.0).pow(2).mean()  # every threshold is 1
                loss = loss + penalty * pen
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
            pen_tot += float(pen.detach()) * len(idx)
        h = {"epoch": ep + 1, "loss": tot / len(order), "penalty": pen_tot / len(order), "seconds": time.perf_counter() - t0}
        history.append(h)
        if log is not None:
            log(f"epoch {ep + 1}/{epochs}: loss {h['loss']:.4f} (membrane penalty {h['penalty']:.4f}), {h['seconds']:.0f} s")
    net.eval()
    from snntorch import utils

    utils.reset(net)
    return history


def run_counts(net, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """snnTorch's forward of the trained ``net`` on ``x`` (n, time, *input): output spikes
    (n, time, n_out) float64, without gradients, in batches."""
    import torch

    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(_forward(net, torch.as_tensor(np.asarray(x[i:i + batch]), dtype=torch.float32)).double().numpy())
    from snntorch import utils

    utils.reset(net)
    return np.concatenate(outs, 0)
