"""The trigger policy: retrain now, or not, and why. Pure functions over plain dicts.

`decide(evidence, policy, thresholds)` judges what the store knows about a model's
champion (read by `mlcycle.lifecycle.evidence`, put together by `assemble` below, see
`EVIDENCE`) and returns a
`Decision` with every rule's verdict as a sentence. Policies:

- `auto` (the default): any of the rules below fires;
- `always`: retrain whenever a batch was scored since the last retrain (the yardstick);
- `never`: never (the other yardstick); the rules are still judged and recorded;
- `drift`: the drift-share rule alone.

Rules, on the task's primary metric (R², F1: higher is better):
- realised decay: in at least `k` of the last `n` labelled windows of the champion, the
  realised metric is below the champion's baseline (its own held-out metric) by more
  than `max_decay`. Only the windows of batches the champion scored count: a new
  champion starts with a clean slate. Only windows labelled since the last retrain
  count: a retrain already learned from the labels before it, so the same bad batch does
  not retrain twice, and a window labelled after it is new evidence that the cooldown
  does not hold back (a relationship change shown by the first labels after a retrain
  that promoted nothing retrains at once).
- estimated decay: the newest label-free estimate's whole band lies more than `max_decay`
  below the reference it was calibrated on. Estimation cannot see a relationship change
  (the features keep their distribution, the target moves), so an estimate that sees no
  decay never vetoes a realised one: the rules are alternatives, never conjoined.
- drift share: the newest label-free monitor run saw more than `max_drift_share` of the
  features drift. Under `auto` this counts only while no labelled window of the champion
  exists: labels, once they come, say whether the drift matters.
- max_age: the champion has scored more than `max_age` batches (0: no limit). Age is
  counted in batches, not days: an hourly schedule over a model that scores nothing new
  must not retrain it, and batches are what the loop's evidence is measured in.
- cooldown: no trigger of the label-free rules (estimated decay, drift share) or of age
  within `cooldown` batches of the last retrain or promotion, so one drifted batch, seen
  again by every run until newer batches replace it, retrains once. Realised decay is
  judged on labels the last retrain did not see, so it needs no cooldown. `always`
  ignores it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

POLICIES = ("auto", "always", "never", "drift")

# What `decide` reads (every key optional; a missing piece makes its rule abstain):
EVIDENCE = {
    "metric": "the primary metric's name (r2, f1)",
    "baseline": "the champion's own held-out primary metric",
    "windows": "labelled windows of the champion, oldest first: {score_run, realised}",
    "estimates": "label-free estimates, oldest first: {score_run, estimated, low, high, reference}",
    "drift_share": "share of features drifted in the newest label-free monitor run",
    "age_batches": "batches the champion scored since it became champion",
    "batches_since_retrain": "batches scored since the last retrain or promotion (None: never)",
    "last_retrain": "when the last retrain or promotion happened (ms; None: never)",
}

DEFAULTS = {
    "max_decay": 0.05,
    "k": 1,
    "n": 3,
    "max_drift_share": 0.5,
    "max_age": 30,
    "cooldown": 2,
}


@dataclass(frozen=True)
class Rule:
    name: str
    fired: bool
    detail: str


@dataclass
class Decision:
    trigger: bool
    reasons: list[str]
    evidence: dict
    rules: list[Rule] = field(default_factory=list)

    @property
    def fired(self) -> list[str]:
        return [r.name for r in self.rules if r.fired]

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons)


def judged_windows(evidence: dict) -> list[dict]:
    """The champion's labelled windows with a finite realised metric, labelled since the
    last retrain (what that retrain learned from is not evidence again), oldest first."""
    windows = [w for w in evidence.get("windows") or [] if _finite(w.get("realised"))]
    since = evidence.get("last_retrain")
    if since is not None:
        windows = [w for w in windows if w.get("labelled") is None or w["labelled"] > since]
    return windows


def realised_decay(evidence: dict, max_decay: float, k: int, n: int) -> Rule:
    baseline, metric = evidence.get("baseline"), evidence.get("metric", "metric")
    if not [w for w in evidence.get("windows") or [] if _finite(w.get("realised"))]:
        return Rule("realised_decay", False, "no labelled window of the champion yet")
    windows = judged_windows(evidence)
    if not windows:
        return Rule("realised_decay", False, "no window labelled since the last retrain")
    if not _finite(baseline):
        return Rule("realised_decay", False, "no baseline for the champion: decay not judged")
    last = windows[-n:]
    decayed = [w for w in last if baseline - w["realised"] > max_decay]
    worst = min(w["realised"] for w in last)
    detail = (
        f"realised {metric} below the baseline {baseline:.3f} by more than {max_decay:g} in "
        f"{len(decayed)} of the last {len(last)} labelled windows (needs {k}; worst {worst:.3f})"
    )
    return Rule("realised_decay", len(decayed) >= k, detail)


def decayed_since_change(evidence: dict, max_decay: float) -> list[str]:
    """The score runs of the newest unbroken streak of decayed windows, oldest first: the
    batches since the champion last held (empty when the newest window held, or without
    a baseline). When realised decay triggers, these are the present the retrain learns
    from; the windows before them still followed what the champion learned."""
    baseline = evidence.get("baseline")
    if not _finite(baseline):
        return []
    streak: list[str] = []
    for window in reversed(judged_windows(evidence)):
        if baseline - window["realised"] <= max_decay or not window.get("score_run"):
            break
        streak.append(window["score_run"])
    return streak[::-1]


def estimated_decay(evidence: dict, max_decay: float) -> Rule:
    estimates = [e for e in evidence.get("estimates") or [] if _finite(e.get("high"))]
    metric = evidence.get("metric", "metric")
    if not estimates:
        return Rule("estimated_decay", False, "no label-free estimate of the champion yet")
    newest = estimates[-1]
    reference = newest.get("reference")
    if not _finite(reference):
        reference = evidence.get("baseline")
    if not _finite(reference):
        return Rule("estimated_decay", False, "no reference for the estimate: decay not judged")
    gap = reference - newest["high"]
    detail = (
        f"estimated {metric} {newest.get('estimated', newest['high']):.3f} "
        f"(band up to {newest['high']:.3f}) against the reference {reference:.3f}: "
        f"the band's top is {gap:+.3f} below it (limit {max_decay:g})"
    )
    return Rule("estimated_decay", gap > max_decay, detail)


def drift_share(evidence: dict, max_drift_share: float, labels_outrank: bool) -> Rule:
    share = evidence.get("drift_share")
    if not _finite(share):
        return Rule("drift_share", False, "no label-free drift measure of the champion yet")
    detail = f"{share:.0%} of the features drifted (limit {max_drift_share:.0%})"
    fired = share > max_drift_share
    if fired and labels_outrank and evidence.get("windows"):
        return Rule("drift_share", False, detail + ", but labelled windows judge the champion")
    return Rule("drift_share", fired, detail)


def max_age(evidence: dict, limit: int) -> Rule:
    age = evidence.get("age_batches")
    if not limit:
        return Rule("max_age", False, "no age limit (max_age 0)")
    if age is None:
        return Rule("max_age", False, "the champion's age is unknown")
    return Rule("max_age", age > limit, f"the champion scored {age} batches (limit {limit})")


def cooling(evidence: dict, cooldown: int) -> str | None:
    """Why a trigger must wait, or None."""
    since = evidence.get("batches_since_retrain")
    if cooldown and since is not None and since < cooldown:
        return (
            f"cooldown: {since} batches since the last retrain or promotion (cooldown {cooldown})"
        )
    return None


def decide(evidence: dict, policy: str, thresholds: dict) -> Decision:
    """Retrain now or not, with a sentence per rule (see the module docstring)."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    t = {**DEFAULTS, **thresholds}
    rules = [
        realised_decay(evidence, t["max_decay"], int(t["k"]), int(t["n"])),
        estimated_decay(evidence, t["max_decay"]),
        drift_share(evidence, t["max_drift_share"], labels_outrank=policy == "auto"),
        max_age(evidence, int(t["max_age"])),
    ]
    if policy == "drift":
        rules = [r for r in rules if r.name == "drift_share"]
    fired = [r for r in rules if r.fired]
    since = evidence.get("batches_since_retrain")
    if policy == "always":
        fresh = since is None or since > 0
        reason = "policy always: " + (
            "a batch was scored since the last retrain"
            if fresh
            else "no batch since the last retrain"
        )
        return Decision(fresh, [reason], evidence, rules)
    if policy == "never":
        would = ", ".join(r.name for r in fired) or "nothing"
        return Decision(False, [f"policy never (rules fired: {would})"], evidence, rules)
    if not fired:
        return Decision(
            False, ["no rule fired: " + "; ".join(r.detail for r in rules)], evidence, rules
        )
    waiting = cooling(evidence, int(t["cooldown"]))
    if waiting and "realised_decay" not in [r.name for r in fired]:
        return Decision(False, [waiting, *(r.detail for r in fired)], evidence, rules)
    return Decision(True, [r.detail for r in fired], evidence, rules)


def _finite(value) -> bool:
    return isinstance(value, int | float) and value == value and abs(value) != float("inf")


# ---------------------------------------------------------------- the evidence, from runs


def batch_times(score_runs: list[dict], referring: list[dict]) -> dict[str, int]:
    """score run id -> when the batch was scored (ms): the score run's start, else the
    earliest run that refers to it (a score run in another store or deleted)."""
    times = {r["run_id"]: r["start"] for r in score_runs}
    for r in sorted(referring, key=lambda r: r["start"]):
        if r.get("score_run"):
            times.setdefault(r["score_run"], r["start"])
    return times


def windows_of(feedback_batches: list[dict], champion: str | None, metric: str, times) -> list:
    """The champion's labelled windows, oldest batch first; a batch labelled twice counts
    with its newest feedback."""
    newest: dict[str, dict] = {}
    for r in sorted(feedback_batches, key=lambda r: r["start"]):
        if champion and r["tags"].get("mlcycle.model_version") not in (None, "", champion):
            continue
        value = r["metrics"].get(f"realised_{metric}")
        if value is None:
            continue
        newest[r["score_run"] or r["run_id"]] = {
            "score_run": r["score_run"],
            "realised": value,
            "labelled": r["start"],
            "labelled_rows": r["metrics"].get("labelled_rows"),
            "label_coverage": r["metrics"].get("label_coverage"),
        }
    return sorted(newest.values(), key=lambda w: times.get(w["score_run"], 0))


def estimates_of(monitor_runs: list[dict], champion: str | None, metric: str) -> list[dict]:
    """The champion's label-free estimates, oldest first."""
    out = []
    for r in sorted(monitor_runs, key=lambda r: r["start"]):
        if champion and r["tags"].get("mlcycle.champion_version") not in (None, "", champion):
            continue
        m = r["metrics"]
        if f"estimated_{metric}" not in m and "drift_share" not in m:
            continue
        out.append(
            {
                "score_run": r["score_run"],
                "estimated": m.get(f"estimated_{metric}"),
                "low": m.get(f"estimated_{metric}_low"),
                "high": m.get(f"estimated_{metric}_high"),
                "reference": m.get(f"reference_{metric}"),
                "drift_share": m.get("drift_share"),
            }
        )
    return out


def assemble(
    *,
    metric: str,
    champion: str | None,
    baseline: float | None,
    baseline_source: str,
    champion_since: int | None,
    last_retrain: int | None,
    score_runs: list[dict],
    feedback_batches: list[dict],
    monitor_runs: list[dict],
) -> dict:
    """The evidence `decide` reads, from runs as plain dicts
    ({run_id, start, score_run, tags, metrics})."""
    times = batch_times(score_runs, feedback_batches + monitor_runs)
    estimates = estimates_of(monitor_runs, champion, metric)
    shares = [e["drift_share"] for e in estimates if e["drift_share"] is not None]
    return {
        "metric": metric,
        "champion_version": champion,
        "baseline": baseline,
        "baseline_source": baseline_source,
        "windows": windows_of(feedback_batches, champion, metric, times),
        "estimates": [e for e in estimates if e["high"] is not None],
        "drift_share": shares[-1] if shares else None,
        "age_batches": sum(
            1 for t in times.values() if champion_since is None or t > champion_since
        ),
        "batches_since_retrain": None
        if last_retrain is None
        else sum(1 for t in times.values() if t > last_retrain),
        "last_retrain": last_retrain,
    }
