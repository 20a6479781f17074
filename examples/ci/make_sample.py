"""Regenerate model/sample_input.npy and model/sample_labels.npy, the stand-in held-out sample of
this example (run from examples/ci).

sample_input.npy: 32 samples x 256 steps x 12 channels of Poisson spike counts with a rise-and-fall
envelope (synthetic: the Braille data set is not shipped). sample_labels.npy: the float model's
own predictions on it (most spikes per output in nirdeploy's float64 reference, dt = 1e-4 s,
reset by subtraction), so the reference scores 100 % by construction and the chip's accuracy is
its agreement with the float model. In your repository, use a held-out sample of real data and its
true labels.
"""

import numpy as np

import nirdeploy

rng = np.random.default_rng(2025)
B, T, C = 32, 256, 12
rates = rng.uniform(0.1, 0.4, size=(B, 1, C))
envelope = np.sin(np.linspace(0, np.pi, T))[None, :, None]
x = rng.poisson(rates * envelope).astype(np.int8)
y = nirdeploy.simulate_reference("model/net.nir", x, dt=1e-4, reset="subtract").sum(axis=1).argmax(axis=1)
np.save("model/sample_input.npy", x)
np.save("model/sample_labels.npy", y.astype(np.int64))
print(x.shape, int(x.sum()), np.bincount(y, minlength=7).tolist())
