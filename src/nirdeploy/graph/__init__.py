"""Graphs: the IR, reading and writing ``.nir`` files, validation and shape inference, the
graph passes, discretization of continuous-time neurons at a time step ``dt``, and inspection.

Nothing here knows about chips: targets and frontends build on this package, never the reverse.
"""
