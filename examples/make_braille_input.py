"""Regenerate examples/braille_input.npy: 4 samples x 256 steps x 12 channels of Poisson spike
counts with a rise-and-fall envelope (synthetic: the Braille data set itself is not shipped)."""

import numpy as np

rng = np.random.default_rng(2024)
T, C = 256, 12
rates = rng.uniform(0.02, 0.25, size=(4, 1, C))
envelope = np.sin(np.linspace(0, np.pi, T))[None, :, None]
x = rng.poisson(rates * envelope * 1.0).astype(np.int8)
np.save("examples/braille_input.npy", x)
print(x.shape, int(x.sum()), int(x.max()))
