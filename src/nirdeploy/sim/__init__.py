"""Simulation of NIR graphs themselves (the float64 reference the chips are compared with)."""
