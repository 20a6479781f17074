"""Chip data files: one TOML file per chip variant (``<target>-<variant>.toml``).

Every limit and bit width a target uses is read from here; no target hard-codes one.
"""
