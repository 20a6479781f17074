"""Neuron layers of the reference semantics in torch, and the spike rules they use.

One :class:`ReferenceNeuron` holds the per-step coefficients of one NIR neuron node
(:class:`~nirdeploy.graph.discretize.NeuronDiscretization`: ``alpha_v``, ``gain_v``, ``bias_v``,
``alpha_i``, ``gain_i``, ``threshold``, ``v_reset``) as buffers and applies, per step::

    [Cuba]     i = alpha_i*i + gain_i*x                 (never reset)
    v = alpha_v*v + gain_v*(i or x) + bias_v
    [spiking]  (z, v) = spike_rule(v, threshold, v_reset)

exactly as :func:`nirdeploy.sim.reference.simulate_reference` does. The spike rule is an
object, so that chip models (issue 11) can swap in their own rule, decays and quantization
without touching the graph runner:

* :class:`StrictThreshold` (the reference): z = v > threshold, one spike per step, then
  ``reset="zero"`` (v <- v_reset) or ``"subtract"`` (v -= threshold).
* :class:`MultiSpike`: z = floor(v / threshold) spikes (capped at ``max_spikes`` when given),
  v -= z*threshold: Sinabs' ``MultiSpike`` IAF and Xylo's multi-spike steps. The test is
  v >= threshold (floor), not NIR's strict >.

Forward values are exact Heaviside / floor; gradients flow through a surrogate
(:class:`SurrogateSpike`, the derivative of a fast sigmoid, slope ``SURROGATE_SLOPE``) so the
module can be trained. The reset is differentiable through v and detached through z, the usual
choice in snnTorch and Norse.
"""

from __future__ import annotations

import torch

from ..errors import UsageError
from ..graph.discretize import RESET_SUBTRACT, RESET_ZERO, NeuronDiscretization, validate_reset

__all__ = ["SURROGATE_SLOPE", "SurrogateSpike", "SpikeRule", "StrictThreshold", "MultiSpike", "ReferenceNeuron"]

SURROGATE_SLOPE = 25.0


class SurrogateSpike(torch.autograd.Function):
    """Forward: ``(v - threshold) > 0`` as 0/1. Backward: 1 / (1 + k|v - threshold|)^2."""

    @staticmethod
    def forward(ctx, shifted: torch.Tensor, slope: float = SURROGATE_SLOPE) -> torch.Tensor:
        ctx.save_for_backward(shifted)
        ctx.slope = slope
        return (shifted > 0).to(shifted.dtype)

    @staticmethod
    def backward(ctx, grad):
        (shifted,) = ctx.saved_tensors
        return grad / (1.0 + ctx.slope * shifted.abs()) ** 2, None


class SpikeRule:
    """How a membrane value becomes spikes and how the neuron resets. Subclass for chips."""

    name = "abstract"

    def __call__(self, v: torch.Tensor, threshold: torch.Tensor, v_reset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class StrictThreshold(SpikeRule):
    """NIR's rule: one spike when v > threshold; reset ``"zero"`` or ``"subtract"``."""

    def __init__(self, reset: str = RESET_ZERO):
        self.reset = validate_reset(reset)
        self.name = f"strict-{reset}"

    def __call__(self, v, threshold, v_reset):
        z = SurrogateSpike.apply(v - threshold)
        zd = z.detach()
        if self.reset == RESET_ZERO:
            v = v * (1 - zd) + v_reset * zd
        else:
            v = v - zd * threshold
        return z, v


class MultiSpike(SpikeRule):
    """floor(v / threshold) spikes per step (>= 0, capped at ``max_spikes`` when given), then
    v -= spikes * threshold (Sinabs ``MultiSpike`` + ``MembraneSubtract``; Xylo's rule with a cap).
    Needs threshold > 0."""

    def __init__(self, max_spikes: int | None = None):
        if max_spikes is not None and int(max_spikes) < 1:
            raise UsageError("max_spikes must be >= 1")
        self.max_spikes = None if max_spikes is None else int(max_spikes)
        self.name = "multi" if max_spikes is None else f"multi-{max_spikes}"

    def __call__(self, v, threshold, v_reset):
        n = torch.floor(v.detach() / threshold).clamp(min=0)
        if self.max_spikes is not None:
            n = n.clamp(max=self.max_spikes)
        # value n, gradient of one surrogate spike at the threshold crossing
        s = SurrogateSpike.apply(v - threshold)
        z = n + (s - s.detach())
        return z, v - n * threshold


class ReferenceNeuron(torch.nn.Module):
    """One neuron node of the reference semantics. State: ``(v, i)`` (i is None unless Cuba).

    Shapes: ``x`` (batch, *neuron_shape); coefficients are neuron-shaped buffers.
    ``forward_step(x, state) -> (output, state)``; spiking nodes output z, others v.
    """

    def __init__(self, d: NeuronDiscretization, spike_rule: SpikeRule, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.name = d.name
        self.type = d.type
        self.spiking = d.spiking
        self.cuba = d.cuba
        self.spike_rule = spike_rule
        self.shape = d.shape

        def buf(key, a):
            self.register_buffer(key, None if a is None else torch.as_tensor(a, dtype=dtype))

        buf("alpha_v", d.alpha_v)
        buf("gain_v", d.gain_v)
        buf("bias_v", d.bias_v)
        buf("alpha_i", d.alpha_i)
        buf("gain_i", d.gain_i)
        buf("threshold", d.threshold)
        buf("v_reset", d.v_reset)

    def initial_state(self, x: torch.Tensor):
        z = torch.zeros_like(x)
        return (z, torch.zeros_like(x) if self.cuba else None)

    def forward_step(self, x: torch.Tensor, state):
        v, i = state
        if self.cuba:
            i = self.alpha_i * i + self.gain_i * x
            drive = i
        else:
            drive = x
        v = self.alpha_v * v + self.gain_v * drive + self.bias_v
        if self.spiking:
            out, v = self.spike_rule(v, self.threshold, self.v_reset)
        else:
            out = v
        return out, (v, i)

    @staticmethod
    def record(state, out, spiking: bool) -> dict:
        v, i = state
        rec = {"v": v}
        if i is not None:
            rec["i"] = i
        if spiking:
            rec["spikes"] = out
        return rec


def spike_rule_for(reset: str, spikes_per_step: int | None = None) -> SpikeRule:
    """The reference rule for ``reset``; with ``spikes_per_step`` N > 1 (or 0 = unbounded) the
    multi-spike rule with subtractive reset (the reset argument must then be ``"subtract"``)."""
    if spikes_per_step is None or spikes_per_step == 1:
        return StrictThreshold(reset)
    if reset != RESET_SUBTRACT:
        raise UsageError("multi-spike steps use a subtractive reset (reset='subtract')")
    return MultiSpike(None if spikes_per_step == 0 else spikes_per_step)
