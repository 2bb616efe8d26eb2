"""The promotion gate: does the challenger replace the champion, and why.

`decide` is a pure function of the two models' metrics on the same rows; `tags` records
it. The aliases a promotion moves are planned and applied by `mlcycle.lifecycle.aliases.promotion`
(champion -> challenger's version, previous -> the old champion's version, and the
challenger alias is removed: leaving it would make the next monitor compare the champion
with itself).

The rule, on the task's primary metric (R² for regression, F1 for classification):
  - on current_test the challenger beats the champion, by at least `min_improvement`
    (absolute: 0.01 means one point of R²), and strictly when `min_improvement` is 0;
  - on reference_test the challenger is not worse than the champion by more than
    `tolerance` (absolute, on the same scale), so a model that forgot the old data
    does not win on the new data alone. With `tolerance=None` ("auto", the default) it
    may lose there at most what it gains on current_test: when the world moved, a
    challenger may trade accuracy on the old rows for more on the new, never the reverse,
    and with no drift a small gain cannot buy a large regression. When the relationship
    between features and target itself changed (`relationship`, measured by
    `mlcycle.monitoring.relationship`), the old rows' targets are what the present no longer does:
    what that change surely costs any model of the present there is allowed on top, so
    the check stops defending obsolete labels and stays as strict as before where the
    reference still describes the present. Where the reference rows lie where the present's
    rows do not (`relationship.apart`: a feature such as a year separates the two sides),
    nothing there speaks for the present and the reference check is not held against the
    challenger (auto tolerance only): it is judged on current_test.
A champion of the same round (`incumbent=False`: main registered it in this pipeline, on
these rows, so it has served no one) is not defended: the challenger replaces it when it
is the better of the two on current_test's rows (the point estimate, even when intervals
are given), the reference check unchanged. The bound exists to keep a model that served
from being replaced on the luck of the test rows; between two models of one round it
would keep whichever happened to be registered first.
Nothing moves when the challenger is missing, failed to load or to score, when a metric
is not a number, or when any check fails; the reason says which. When the test rows are
too few to tell the models apart (`gate.undecidable`), the decision is "not enough rows"
(its own status), whatever the metrics say; against a champion of the same round both
checks are then judged at their point estimates instead (the rows cannot give bounds, and
refusing to judge would keep whichever model was registered first)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mlcycle.monitoring import gate
from mlcycle.monitoring.metrics import PRIMARY
from mlcycle.monitoring.relationship import OVERLAP_FLOOR

PROMOTED = "promoted"
NOT_PROMOTED = "not_promoted"
# Would have been promoted, but promote=false.
QUALIFIED = "qualified"
# The test rows cannot tell the models apart: nothing judged, nothing moved.
NOT_ENOUGH_ROWS = "not_enough_rows"
DECISION_TAG = "mlcycle.promotion.decision"
REASON_TAG = "mlcycle.promotion.reason"


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Decision:
    promote: bool
    reason: str
    checks: list[Check] = field(default_factory=list)
    requested: bool = True
    # What the reference check excused for a change of relationship (0: nothing).
    excused: float = 0.0
    undecided: bool = False  # the rows could not decide (then promote is False)
    # The reference rows lie where the present's do not: the reference check not held.
    apart: bool = False

    @property
    def status(self) -> str:
        if self.undecided:
            return NOT_ENOUGH_ROWS
        if self.promote and self.requested:
            return PROMOTED
        return QUALIFIED if self.promote else NOT_PROMOTED

    @property
    def headline(self) -> str:
        if self.status == PROMOTED:
            return "challenger promoted to champion"
        if self.status == QUALIFIED:
            return "not promoted (promote=false), but the challenger qualifies"
        if self.status == NOT_ENOUGH_ROWS:
            return "not promoted: not enough test rows to decide"
        return "not promoted"


def decide(
    task: str,
    champion: dict[str, float] | None,
    challenger: dict[str, float] | None,
    *,
    min_improvement: float = 0.0,
    tolerance: float | None = None,
    requested: bool = True,
    champion_error: str | None = None,
    challenger_error: str | None = None,
    same_version: bool = False,
    intervals: dict | None = None,
    relationship=None,
    undecidable: str | None = None,
    incumbent: bool = True,
) -> Decision:
    """Metrics are `{'current_test_r2': ...}` dicts (as `evaluate.score` returns), None when
    the model is absent; *_error says why a model could not be loaded or scored.

    `intervals` ({'current_test': gate.Interval, 'reference_test': ...}, from
    `gate.paired_bootstrap` on the same predictions) judges both checks at the intervals'
    bounds instead of the point estimates (`gate.judge`), and the details show them.
    `relationship` (`mlcycle.monitoring.relationship.Evidence`, or None when not measured) excuses,
    under the auto tolerance, what a change of relationship surely costs on reference_test.
    `undecidable` (`gate.undecidable`) says why the test rows cannot decide: then nothing
    is judged between two models, and the decision says so. `incumbent=False` (the
    champion is of the same round) judges the gain on current_test at its point estimate."""
    primary = PRIMARY[task]
    cur, ref = f"current_test_{primary}", f"reference_test_{primary}"

    def no(reason: str, checks=()) -> Decision:
        return Decision(False, reason, list(checks), requested)

    if challenger_error:
        return no(f"the challenger failed: {challenger_error}")
    if challenger is None:
        return no("there is no challenger to compare with the champion")
    if same_version:
        return no("the challenger is the champion's own version")
    if not _finite(challenger, cur, ref):
        return no(f"the challenger has no finite {cur} / {ref}")
    if champion_error:
        return no(f"the champion failed: {champion_error}")
    if champion is None:
        return Decision(True, "there is no champion: the challenger takes the place", [], requested)
    if not _finite(champion, cur, ref):
        return no(f"the champion has no finite {cur} / {ref}")
    if undecidable and incumbent:
        reason = f"not enough rows to decide: {undecidable}; nothing was judged"
        return Decision(False, reason, [], requested, undecided=True)
    if undecidable:
        # A champion of this round served no one: keeping it because the rows cannot give
        # bounds would keep whichever model was registered first. The point estimates are
        # what the rows can tell.
        intervals = None
    gain = challenger[cur] - champion[cur]
    loss = champion[ref] - challenger[ref]
    # Under the auto tolerance a changed relationship's cost is not the challenger's loss.
    excused = relationship.excused if relationship is not None and tolerance is None else 0.0
    allowed = max(gain, 0.0) if tolerance is None else tolerance
    better, holds = gain > 0 and gain >= min_improvement, loss - excused <= allowed
    ci = {"current_test": "", "reference_test": ""}
    if intervals is not None:
        change = relationship.interval if excused else None
        better, holds, allowed, ci = _judge_intervals(
            intervals, gain, loss, min_improvement, tolerance, change
        )
        if not incumbent:
            better = gain > 0 and gain >= min_improvement
            ci["current_test"] += "; the champion is of this round: judged on all rows"
    if undecidable:
        ci["current_test"] += (
            f"; {undecidable}: too few for bounds, and the champion is of this round, so "
            "both checks at the point estimates"
        )
    if excused:
        ci["reference_test"] += f"; {excused - loss:+.4f} beyond the change's cost {excused:.4f}"
    limit = f"its gain on current_test ({allowed:.4f})" if tolerance is None else f"{tolerance:g}"
    beyond = " beyond what the relationship change costs there" if excused else ""
    name = f"not worse on reference_test{beyond} by more than {limit}"
    apart = relationship is not None and tolerance is None and relationship.apart
    if apart:
        holds = True
        name = "reference_test not held against it: its rows lie where the present's do not"
        ci["reference_test"] += (
            f"; overlap of the two sides' features {relationship.overlap:.2f}, below "
            f"{OVERLAP_FLOOR:g}"
        )
    checks = [
        Check(
            f"better on current_test by at least {min_improvement:g}",
            better,
            f"{primary} {challenger[cur]:.4f} vs {champion[cur]:.4f} ({gain:+.4f}"
            f"{ci['current_test']})",
        ),
        Check(
            name,
            holds,
            f"{primary} {challenger[ref]:.4f} vs {champion[ref]:.4f} ({-loss:+.4f}"
            f"{ci['reference_test']})",
        ),
    ]
    failed = [c for c in checks if not c.passed]
    if failed:
        return Decision(
            False,
            "; ".join(f"failed: {c.name} ({c.detail})" for c in failed),
            checks,
            requested,
            excused,
            apart=apart,
        )
    held = "is not judged on reference_test" if apart else "holds on reference_test"
    return Decision(
        True,
        f"the challenger is better on current_test ({checks[0].detail}) "
        f"and {held} ({checks[1].detail})",
        checks,
        requested,
        excused,
        apart=apart,
    )


def _judge_intervals(
    intervals: dict, gain: float, loss: float, min_improvement, tolerance, change=None
):
    """The checks at the intervals' bounds, and each split's interval for its detail text
    (reference_test's with the change's part taken out when a change is excused).

    Intervals of other rows or predictions than the metrics would judge one thing and show
    another: their point estimates must be the metrics' own differences."""
    current, reference = intervals["current_test"], intervals["reference_test"]
    if not (
        math.isclose(current.delta, gain, abs_tol=1e-9)
        and math.isclose(reference.delta, -loss, abs_tol=1e-9)
    ):
        raise ValueError(
            f"the intervals' differences ({current.delta:+.6f}, {reference.delta:+.6f}) are not "
            f"the metrics' ({gain:+.6f}, {-loss:+.6f}): computed on other predictions"
        )
    better, holds, allowed, judged = gate.judge(
        current, reference, min_improvement=min_improvement, tolerance=tolerance, change=change
    )
    # Confidence 0 is the point rule: the details read as without intervals.
    ci = {
        name: f", {interval.text()}" if interval.confidence else ""
        for name, interval in {"current_test": current, "reference_test": judged}.items()
    }
    return better, holds, allowed, ci


def _finite(metrics: dict[str, float], *keys: str) -> bool:
    return all(isinstance(metrics.get(k), int | float) and math.isfinite(metrics[k]) for k in keys)


def tags(decision: Decision) -> dict[str, str]:
    """The decision as tags, for the monitor run and the challenger's model version."""
    return {DECISION_TAG: decision.status, REASON_TAG: decision.reason[:4900]}
