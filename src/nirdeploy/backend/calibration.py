"""Calibration: a guarded optimisation of a compiled network on sample input, shared by targets.

A target that can tune its quantization (scales, thresholds, shifts...) from data describes its
candidates and its moves; this module runs the search and guarantees what it returns:

* **explicit objective**: every candidate is scored by one chip simulation of the sample,
  compared with the float reference on the same sample. The score is a tuple compared
  lexicographically, higher is better; the standard one is
  :func:`nirdeploy.evaluation.compare.readout_agreement`'s ``score``: (share of samples where
  chip and reference reach the same readout decision, correlation of their readout values);
* **never worse**: the uncalibrated candidate is evaluated first and only a strictly better
  score replaces the best one, so the result is never worse than the uncalibrated network
  *on the sample*;
* **stops when it stops improving**: a round tries the target's proposed moves in order and
  takes the first that improves the score; a round in which no move improves ends the search;
* **budget in simulations**: ``budget`` chip simulations of the sample at most, the first one
  included (the report says how many were used);
* **per-round figures**: every evaluation is recorded (move, neurons changed, score, accepted
  or not, the target's own figures) and lands in the fit report (``details["calibration"]`` and
  one text line per round);
* **skipped when nothing fits**: a network that does not fit is not calibrated
  (:meth:`CalibrationResult.skip`), nor is one without sample input.

Interface for a target (Xylo's is ``nirdeploy_targets.xylo.calibrate``)::

    from nirdeploy.backend.calibration import Evaluation, Move, calibrate

    def evaluate(candidate) -> Evaluation:     # ONE chip simulation of the sample
        out = simulate(build(candidate), x_sample)
        agree = readout_agreement(out, ref_out, latency, readout)
        return Evaluation(agree["score"], {"agreement": agree["decision_agreement"], ...}, observation=states)

    def propose(candidate, ev: Evaluation) -> list[Move]:
        # moves from the current best, most promising first; [] when nothing is left to try
        return [Move("positive saturation", new_candidate, changed=n), ...]

    result = calibrate(initial_candidate, evaluate, propose, budget=8)
    result.best, result.best_score, result.rounds, result.simulations, result.best_evaluation
    result.add_to_report(report)   # details["calibration"] and a text line per round

Candidates and observations are opaque to this module (any Python objects).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Evaluation", "Move", "CalibrationRound", "CalibrationResult", "calibrate", "DEFAULT_BUDGET", "add_sample_agreement"]

DEFAULT_BUDGET = 8  # chip simulations of the sample, the uncalibrated one included


@dataclass
class Evaluation:
    """The score of one candidate (higher is better, compared as a tuple), figures for the
    report (JSON-able scalars), and whatever the target's ``propose`` needs (e.g. states)."""

    score: tuple
    figures: dict = field(default_factory=dict)
    observation: Any = None


@dataclass
class Move:
    """A proposed change: a name for the report, the new candidate, how many units it changes."""

    name: str
    candidate: Any
    changed: int = 0


@dataclass
class CalibrationRound:
    round: int  # 0: the uncalibrated network
    move: str
    changed: int
    score: tuple
    accepted: bool
    figures: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"round": self.round, "move": self.move, "changed": self.changed, "score": list(self.score),
                "accepted": self.accepted, **self.figures}


@dataclass
class CalibrationResult:
    best: Any
    best_score: tuple | None
    initial_score: tuple | None
    rounds: list[CalibrationRound] = field(default_factory=list)
    simulations: int = 0
    budget: int = 0
    stopped: str = ""  # why the search ended
    skipped: str = ""  # non-empty: calibration did not run, and why
    objective: str = ""
    best_evaluation: Evaluation | None = None  # the best candidate's Evaluation (observation included)

    @classmethod
    def skip(cls, initial: Any, reason: str, budget: int = 0) -> "CalibrationResult":
        return cls(best=initial, best_score=None, initial_score=None, budget=budget, skipped=reason, stopped="skipped")

    @property
    def improved(self) -> bool:
        return self.best_score is not None and self.initial_score is not None and self.best_score > self.initial_score

    def to_dict(self) -> dict:
        return {
            "skipped": self.skipped or None,
            "objective": self.objective,
            "budget_simulations": self.budget,
            "simulations": self.simulations,
            "stopped": self.stopped,
            "initial_score": None if self.initial_score is None else list(self.initial_score),
            "best_score": None if self.best_score is None else list(self.best_score),
            "improved": self.improved,
            "rounds": [r.to_dict() for r in self.rounds],
        }

    def lines(self) -> list[str]:
        """Human-readable lines: one per evaluation, then the outcome."""
        if self.skipped:
            return [f"calibration skipped: {self.skipped}"]
        out = []
        for r in self.rounds:
            figs = ", ".join(f"{k} {_fmt(v)}" for k, v in r.figures.items())
            what = "uncalibrated" if r.round == 0 else f"round {r.round}: {r.move} ({r.changed} changed)"
            verdict = "" if r.round == 0 else (" -> kept" if r.accepted else " -> rejected (no improvement)")
            out.append(f"calibration {what}: score {_fmt_score(r.score)}{'; ' + figs if figs else ''}{verdict}")
        out.append(f"calibration: {self.simulations} of {self.budget} simulations used; stopped: {self.stopped}; "
                   + (f"score {_fmt_score(self.initial_score)} -> {_fmt_score(self.best_score)}" if self.improved
                      else "kept the uncalibrated network (nothing improved the objective on the sample)"))
        return out

    def add_to_report(self, report, key: str = "calibration") -> None:
        report.details[key] = self.to_dict()
        report.notes.extend(self.lines())


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _fmt_score(s) -> str:
    return "(" + ", ".join(_fmt(float(v)) if isinstance(v, (int, float)) else str(v) for v in s) + ")" if s is not None else "-"


def calibrate(initial: Any, evaluate: Callable[[Any], Evaluation], propose: Callable[[Any, Evaluation], list[Move]], *,
              budget: int = DEFAULT_BUDGET, objective: str = "", max_rounds: int = 100) -> CalibrationResult:
    """Guarded search from ``initial``; see the module docstring for the contract.

    ``budget`` (>= 1): chip simulations of the sample at most, the evaluation of ``initial``
    included. Returns a :class:`CalibrationResult` whose ``best`` is ``initial`` unless a move
    scored strictly higher."""
    budget = max(int(budget), 1)
    res = CalibrationResult(best=initial, best_score=None, initial_score=None, budget=budget, objective=objective)
    ev0 = evaluate(initial)
    res.simulations = 1
    res.best_score = res.initial_score = tuple(ev0.score)
    res.rounds.append(CalibrationRound(0, "uncalibrated", 0, tuple(ev0.score), True, dict(ev0.figures)))
    best, best_ev = initial, ev0
    rnd = 0
    while True:
        if res.simulations >= budget:
            res.stopped = f"budget of {budget} simulations used"
            break
        if rnd >= max_rounds:
            res.stopped = f"{max_rounds} rounds"
            break
        moves = [m for m in propose(best, best_ev) if m is not None]
        if not moves:
            res.stopped = "no further move to try"
            break
        rnd += 1
        accepted = False
        for mv in moves:
            if res.simulations >= budget:
                break
            ev = evaluate(mv.candidate)
            res.simulations += 1
            better = tuple(ev.score) > tuple(best_ev.score)
            res.rounds.append(CalibrationRound(rnd, mv.name, int(mv.changed), tuple(ev.score), better, dict(ev.figures)))
            if better:
                best, best_ev = mv.candidate, ev
                accepted = True
                break
        if not accepted:
            res.stopped = "no move improved the objective" if res.simulations < budget else f"budget of {budget} simulations used"
            break
    res.best, res.best_score, res.best_evaluation = best, tuple(best_ev.score), best_ev
    return res


def add_sample_agreement(report, *, samples: int, steps: int, agreement: float | None, correlation: float | None,
                         values: str = "spike-count", context: str = "", detail: str = "", hint: str = "",
                         extra: dict | None = None) -> None:
    """Record a ``--sample`` measurement in ``report``, the same way on every target:
    ``details["sample_agreement"]`` (``samples``, ``steps``, ``decision_agreement``,
    ``correlation`` and ``extra``), one note with the figures, and, when ``agreement`` (a
    fraction; None: the reference decides no sample) is below
    :data:`nirdeploy.evaluation.compare.AGREEMENT_WARN`, a ``fidelity`` warning, because a figure
    in a note is easy to miss. ``values`` names the correlated readout ("spike-count", "Vmem");
    ``context`` is added to the note's "(N x T steps...)" and ``detail`` to the warning."""
    from ..evaluation.compare import AGREEMENT_WARN
    from .report import Violation

    report.details["sample_agreement"] = {"samples": int(samples), "steps": int(steps), **(extra or {}),
                                          "decision_agreement": agreement, "correlation": correlation}
    pct = _pct(agreement)
    report.notes.append(f"sample ({samples} x {steps} steps{context}): the chip's output decision equals the float reference's on "
                        f"{pct} of the samples the reference decides; {values} correlation {_num(correlation)}")
    if agreement is None or agreement < AGREEMENT_WARN:
        report.violations.append(Violation(
            "fidelity", f"the chip's output decision equals the float reference's on {pct} of the sample's decided samples{detail}",
            "", limit=f"agreement >= {100 * AGREEMENT_WARN:.0f} %", actual=pct, severity="warning", hint=hint))
