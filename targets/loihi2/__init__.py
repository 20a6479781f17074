"""Intel Loihi 2 target (Lava's fixed-point CUBA LIF, Dense and Conv synapses)."""
from .target import Loihi2Target

__all__ = ["Loihi2Target"]
