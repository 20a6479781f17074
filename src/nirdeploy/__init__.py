"""nirdeploy: lower NIR spiking networks to neuromorphic chips.

Importing this package imports neither torch nor any vendor SDK. The API functions load their
machinery on first use::

    import nirdeploy
    report = nirdeploy.check("graph.nir", target="xylo:audio2", dt=1e-4)
    dep = nirdeploy.compile("graph.nir", target="xylo:audio2", dt=1e-4, reset="subtract")
    y = dep.simulate(x)
    ref = nirdeploy.simulate_reference("graph.nir", x, dt=1e-4)
    res = nirdeploy.finetune("graph.nir", "xylo:audio3", x, labels, epochs=5, membrane_penalty=0.1)  # [torch] extra
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import (  # noqa: E402
    Deployment,
    check,
    check_all,
    compare,
    compare_outputs,
    compile,
    inspect,
    load_deployment,
    load_graph,
    simulate_reference,
    from_torch,  # needs the [torch] extra; torch is imported on call
    to_torch,
    finetune,  # needs the [torch] extra; torch is imported on call
)
from .errors import DoesNotFitError, GraphLoadError, GraphValidationError, NirDeployError, UsageError  # noqa: E402
from .backend.intformat import IntFormat  # noqa: E402
from .backend.report import FitReport, Resource, Violation  # noqa: E402
from .backend.target import Target, available_targets, get_target, register_target  # noqa: E402

__all__ = [
    "Deployment",
    "check",
    "check_all",
    "compare_outputs",
    "compare",
    "from_torch",
    "to_torch",
    "finetune",
    "compile",
    "inspect",
    "load_deployment",
    "load_graph",
    "simulate_reference",
    "NirDeployError",
    "UsageError",
    "GraphLoadError",
    "GraphValidationError",
    "DoesNotFitError",
    "IntFormat",
    "FitReport",
    "Resource",
    "Violation",
    "Target",
    "available_targets",
    "get_target",
    "register_target",
]
