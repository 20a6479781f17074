"""Chip checks of our spiking network, run by CI on every change to the model or its training.

Copy this file into your repository's tests, point the paths below at your exported graph and a
held-out sample, and run (from the repository root, where the relative paths start)::

    pytest tests/test_chip.py --nirdeploy-target xylo:audio2 --nirdeploy-report nirdeploy-report

nirdeploy's pytest plugin is loaded automatically once nirdeploy is installed. Give several
targets (``--nirdeploy-target xylo:audio2,xylo:imu``, ``xylo:all`` for every Xylo variant, or ``all``) and every test below runs once
per target. A failing check prints the fit report's violations or the chip-vs-reference table.
"""

from nirdeploy.ci import assert_chip_accuracy, assert_chip_agrees, assert_fits

GRAPH = "model/net.nir"  # the network as exported to NIR (here: the NIR paper's Braille RNN, snnTorch)
SAMPLE_INPUT = "model/sample_input.npy"  # held-out input: (batch, time, channels) spike counts
SAMPLE_LABELS = "model/sample_labels.npy"  # its labels: (batch,) class indices
BUDGET = "budget.toml"  # how much of the chip the model may use (see the file)
# How the network was trained: snnTorch's export assumes dt = 1e-4 s; this one resets by subtraction.
SETTINGS = {"dt": 1e-4, "reset": "subtract"}

# Floors: set them a little under what your model measures today, so that CI catches any loss.
# This network follows its float model on 72 % of the sample on Xylo (most spikes on the same
# output); the gap is multi-spike steps on the chip, which `nirdeploy check` warns about.
MIN_AGREEMENT = {"argmax_agreement": 0.6, "count_correlation": 0.75}
MIN_ACCURACY, MAX_DROP = 0.6, 0.35


def test_fits_within_budget(nirdeploy_target):
    assert_fits(GRAPH, nirdeploy_target, budget=BUDGET, **SETTINGS)


def test_chip_follows_the_float_model(nirdeploy_target):
    assert_chip_agrees(GRAPH, nirdeploy_target, SAMPLE_INPUT, min_agreement=MIN_AGREEMENT, **SETTINGS)


def test_on_chip_accuracy(nirdeploy_target):
    acc = assert_chip_accuracy(GRAPH, nirdeploy_target, SAMPLE_INPUT, SAMPLE_LABELS, min_accuracy=MIN_ACCURACY,
                               max_drop=MAX_DROP, **SETTINGS)
    print(f"on-chip accuracy {acc['chip_accuracy']:.3f} (float reference {acc['reference_accuracy']:.3f})")
