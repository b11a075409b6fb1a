"""The rules of the retraining loop, as pure functions: which days a model trains on, whether
the training data may be used (the gate), and when drift or performance calls for a retrain.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from dataplatform.lib import drift
from dataplatform.lib.quality import Band, BandStatus, learned_band

# After a drift the days before its onset still train, but weigh PRE_ONSET_WEIGHT each (a day after it
# weighs 1): a regime of a few days is too little to train on alone (measured: 7-day regime windows
# lost 5 AUC points to 14-day windows on the concept-drift scenario). Each time the new regime gains
# REGIME_FOLLOW_UP_DAYS labelled days, it retrains, until its window holds the new regime alone.
PRE_ONSET_WEIGHT = 0.3
REGIME_FOLLOW_UP_DAYS = 7
# Once a drift has settled, the champion is behind the regime it settled in: a retrain is due as soon
# as this many training days (plus a holdout) are labelled after the last drifted day; its window still
# holds 14 days, those before the settling weighted down (measured on the mixed-drift scenario, mean AUC
# of the last two weeks behind retraining every day: 1.7 points after a week's wait, 0.5 after 3 days).
SETTLED_FOLLOW_UP_DAYS = 3
# Days without drift inside one episode: after a promotion the new champion has seen part of the new
# regime, so its drift reports may go quiet for a few days while the data moves on. The regime began
# at the episode's first day, not at the quiet days' end.
ONSET_MAX_GAP_DAYS = 3


@dataclass(frozen=True)
class TrainingWindow:
    """Training days and the holdout days after them (the most recent labelled days)."""

    train_days: list[dt.date]
    holdout_days: list[dt.date]
    excluded_days: dict[str, str]  # day -> why it was left out
    onset: dt.date | None = None  # the current drift's estimated onset, when a drift decision asked
    weights: dict[dt.date, float] = field(default_factory=dict)  # per training day; absent: 1
    rule: str = "latest labelled days"

    @property
    def now_days(self) -> list[dt.date]:
        """The holdout days of the regime the data is in now: from the onset on (all, without one)."""
        after = [d for d in self.holdout_days if self.onset is None or d >= self.onset]
        return after or list(self.holdout_days)

    def to_dict(self) -> dict[str, Any]:
        return {
            "train_days": [str(d) for d in self.train_days],
            "holdout_days": [str(d) for d in self.holdout_days],
            "excluded_days": self.excluded_days,
            "onset": str(self.onset) if self.onset else None,
            "weights": {str(d): w for d, w in sorted(self.weights.items())},
            "rule": self.rule,
        }


def choose_training_window(
    labelled_days: Sequence[dt.date],
    *,
    train_days: int,
    holdout_days: int,
    day_corruption: Mapping[dt.date, float],
    max_corruption: float,
    suspect_days: Mapping[dt.date, str] | None = None,
    onset: dt.date | None = None,
) -> TrainingWindow:
    """The rule: the latest `holdout_days` labelled days are the holdout; the `train_days`
    labelled days before them are the training window, minus days whose corruption share
    (quarantined or implausible / all records of the day) exceeds `max_corruption`: those are excluded and
    named, so the valid remainder still trains and a corrupted stretch never does.

    `suspect_days` (day -> why; see `lib.suspects`) passed the contract but look corrupted: they
    are in neither the training window nor the holdout (a holdout of wrong data would judge the
    challenger on it), and are named with why.

    `onset` (a drift decision's estimate, :func:`drift_onset`) weighs the training days before it
    PRE_ONSET_WEIGHT (the new regime counts more, the old still teaches what has not changed). The
    holdout stays the latest days, and the challenger is judged on those of them after the onset
    (`now_days`).
    """
    suspect = dict(suspect_days or {})
    labelled = sorted(set(labelled_days))
    clean = [day for day in labelled if day not in suspect]
    holdout = clean[-holdout_days:] if holdout_days else []
    candidates = clean[: len(clean) - len(holdout)][-train_days:]
    first = candidates[0] if candidates else (holdout[0] if holdout else None)
    excluded: dict[str, str] = {}
    for day in labelled:
        if first is None or day < first or day in holdout:
            continue
        corruption = day_corruption.get(day, 0.0)
        reasons = [f"corruption {corruption:.1%} > {max_corruption:.1%}"] if corruption > max_corruption else []
        reasons += [f"suspect: {suspect[day]}"] if day in suspect else []
        if reasons:
            excluded[str(day)] = "; ".join(reasons)
    train = [day for day in candidates if str(day) not in excluded]
    if onset is None:
        return TrainingWindow(train, holdout, excluded)
    weights = {day: PRE_ONSET_WEIGHT for day in train if day < onset}
    if not weights:
        return TrainingWindow(train, holdout, excluded, onset, {}, f"the new regime alone: every day from {onset} on")
    rule = f"recent-weighted: {len(weights)} days before the onset {onset} weigh {PRE_ONSET_WEIGHT}"
    return TrainingWindow(train, holdout, excluded, onset, weights, rule)


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str]
    figures: dict[str, Any] = field(default_factory=dict)


# Signs of a broken input rather than drift to learn from (distribution shifts are what retraining is
# for, so they never block it): a feature's missing share moved by more than this, or most of a
# categorical feature's values were never seen before (codes replaced).
SEVERE_NULL_SHIFT = 0.2
SEVERE_UNSEEN_SHARE = 0.5


def severe_drift(current: pl.DataFrame, previous: pl.DataFrame, columns: Sequence[str]) -> list[str]:
    """The features of `current` that look broken against `previous` (the last accepted training set),
    each with its missing-share shift and unseen-category share; the gate refuses the set when any do."""
    if previous.height == 0 or current.height == 0:
        return []
    results = drift.compare(previous.select(columns), current.select(columns))
    return [
        f"{r.column} (missing share {r.null_share_shift or 0:+.2f}, unseen categories {r.unseen_categories or 0:.0%})"
        for r in results
        if abs(r.null_share_shift or 0) > SEVERE_NULL_SHIFT or (r.unseen_categories or 0) > SEVERE_UNSEEN_SHARE
    ]


def training_gate(
    *,
    window: TrainingWindow,
    rows: int,
    positives: int,
    contract_failures: int,
    severe_drift: Sequence[str],
    min_train_days: int,
    min_rows: int,
    min_positives: int,
) -> GateResult:
    """Whether a training set may be used. Every failed condition is named."""
    reasons = []
    if len(window.train_days) < min_train_days:
        reasons.append(
            f"only {len(window.train_days)} clean labelled days (< {min_train_days}); "
            f"excluded: {', '.join(window.excluded_days) or 'none'}"
        )
    if rows < min_rows:
        reasons.append(f"{rows} examples (< {min_rows})")
    if positives < min_positives:
        reasons.append(f"{positives} positive labels (< {min_positives})")
    if contract_failures:
        reasons.append(f"{contract_failures} examples break the training contract")
    if severe_drift:
        reasons.append(f"severe drift against the last accepted training set: {', '.join(severe_drift)}")
    figures = {"rows": rows, "positives": positives, "train_days": len(window.train_days), **window.to_dict()}
    return GateResult(not reasons, reasons, figures)


# A day's drift is material when at least this many features are beyond their thresholds. One
# feature alone is within what a few dozen daily tests produce by chance. The domain classifier
# is reported but does not decide: day-specific features (yesterday's popularity counts) let it
# tell almost any day from the training window (measured: AUC 0.92-0.95 on a stationary stream).
MIN_DRIFTED_FEATURES = 2
# Drift is without impact when the drifted features carry less than this share of the champion's
# (permutation) importance and its performance holds: the model does not use what moved.
MIN_IMPACT_SHARE = 0.1


@dataclass(frozen=True)
class DriftDay:
    day: dt.date
    drifted_features: list[str]
    scores: dict[str, float]  # effect size / threshold per feature
    multivariate_drift: bool
    # Features with no usable value today (all null or non-finite): a broken input, not drift.
    broken_features: list[str] = field(default_factory=list)
    # Share of the champion's feature importance the drifted features carry (None: not known).
    impact: float | None = None
    # The champion's estimated AUC today and its latest realized AUC are within their bands.
    performance_holds: bool = False

    @property
    def material(self) -> bool:
        return len(self.drifted_features) >= MIN_DRIFTED_FEATURES

    @property
    def verdict(self) -> str:
        """The one rule the drift report shows and the retraining sensor acts on.

        `broken_input`: alert, never retrain (a model trained on a broken feed learns the breakage);
        `drift`: material (MIN_DRIFTED_FEATURES or more features beyond their thresholds);
        `drift_without_impact`: material, but the drifted features carry less than MIN_IMPACT_SHARE of
        the champion's importance and its performance holds: recorded, not retrained for;
        `stable`: anything less, including one feature or the domain classifier alone.
        """
        if self.broken_features:
            return "broken_input"
        if not self.material:
            return "stable"
        if self.impact is not None and self.impact < MIN_IMPACT_SHARE and self.performance_holds:
            return "drift_without_impact"
        return "drift"

    def headline(self, since: dt.date | None) -> str:
        """The verdict and its reason in one line, the drifted features named with their scores,
        largest first; `since` is the first day of the current episode."""
        if self.broken_features:
            return f"broken_input: no usable value in {', '.join(self.broken_features)} (alert, no retrain)"
        named = ", ".join(
            f"{f} ({self.scores[f]:.1f}x threshold)" if f in self.scores else f
            for f in sorted(self.drifted_features, key=lambda f: -self.scores.get(f, 0.0))
        )
        if not self.material:
            beyond = f": {named}" if named else ""
            return (
                f"stable: {len(self.drifted_features)} feature(s) beyond their thresholds{beyond}, "
                f"fewer than {MIN_DRIFTED_FEATURES}"
            )
        episode = f" since {since} ({(self.day - since).days + 1} days)" if since else ""
        impact = f"; they carry {self.impact:.0%} of the champion's importance" if self.impact is not None else ""
        verdict = self.verdict
        held = " and its performance holds: not retrained for" if verdict == "drift_without_impact" else ""
        count = len(self.drifted_features)
        return f"{verdict}{episode}: {count} features beyond their thresholds: {named}{impact}{held}"


def judge_day_auc(band: Band | None, auc: float | None, auc_ci: Sequence[float] | None) -> BandStatus:
    """A day's realized AUC against the champion's band (on the error, 1 - AUC: "high" is worse).

    A band learned from daily AUCs already holds a day's sampling noise: the day's AUC is judged as it
    is. A band from the holdout holds only the holdout's uncertainty: the day is judged by the upper end
    of its 95% interval (below the band only when even its best plausible AUC is)."""
    judged = auc if band and band.n_history else (auc_ci[1] if auc_ci else auc)
    if band is None or judged is None:
        return BandStatus.NO_HISTORY
    return band.status(1 - judged)


# A model's band needs this many days it did not train on; until then its holdout sets the band.
MIN_OUT_OF_SAMPLE_DAYS = 5
MIN_PERFORMANCE_SPREAD = 0.01


def performance_band(
    out_of_sample_aucs: Sequence[float],
    holdout_auc: float | None,
    holdout_auc_ci: Sequence[float] | None,
    *,
    day_se: float = 0.0,
) -> Band | None:
    """The band of a model's error (1 - AUC) learned from data it did not train on: its daily AUCs after
    its training window (median ± 3 robust sd, the sd never below `day_se`, a day's sampling error:
    a MAD of a week of days can come out far smaller, measured at 0.005 against a day's 0.02) once
    MIN_OUT_OF_SAMPLE_DAYS exist, before that its holdout AUC with the spread its 95% bootstrap
    interval implies. (Days inside the training window score too well: a band learned there flags
    every honest day, and one learned on them hides a real drop.) None when neither exists."""
    if len(out_of_sample_aucs) >= MIN_OUT_OF_SAMPLE_DAYS:
        spread = max(MIN_PERFORMANCE_SPREAD, day_se)
        return learned_band([1 - a for a in out_of_sample_aucs], min_width=spread)
    if holdout_auc is None:
        return None
    low, high = holdout_auc_ci if holdout_auc_ci else (holdout_auc, holdout_auc)
    spread = max((high - low) / (2 * 1.96), MIN_PERFORMANCE_SPREAD)
    center = 1 - holdout_auc
    return Band(center, center - 3 * spread, center + 3 * spread, center + 6 * spread, spread, 0)


@dataclass(frozen=True)
class PerformanceDay:
    day: dt.date
    auc: float | None
    below_band: bool


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    rule: str  # which rule fired, or why not
    reason: str
    features: list[str]
    scores: dict[str, float]
    latest_day: dt.date | None
    onset: dt.date | None = None  # the current episode's first day, when a retrain is asked for

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "latest_day": str(self.latest_day) if self.latest_day else None,
            "onset": str(self.onset) if self.onset else None,
        }


def drift_onset(
    drift_days: Sequence[DriftDay],
    performance_days: Sequence[PerformanceDay],
    *,
    max_gap_days: int = ONSET_MAX_GAP_DAYS,
) -> dt.date | None:
    """The first day of the current episode: from the latest day whose drift was material (with or
    without impact) or whose realized AUC was below its band, back through such days while no more than
    `max_gap_days` days without one separate them. None when no day is flagged."""
    flagged = sorted({d.day for d in drift_days if d.material} | {p.day for p in performance_days if p.below_band})
    if not flagged:
        return None
    onset = flagged[-1]
    for day in reversed(flagged[:-1]):
        if (onset - day).days > max_gap_days + 1:
            break
        onset = day
    return onset


@dataclass(frozen=True)
class LastWindow:
    """The latest training window (its drift onset and training days) and the champion's last training day."""

    onset: dt.date | None
    train_days: Sequence[dt.date]
    champion_trained_until: dt.date | None


def follow_up(
    drift_days: Sequence[DriftDay],
    performance_days: Sequence[PerformanceDay],
    last: LastWindow,
    *,
    today: dt.date,
    labelled_days: Sequence[dt.date],
    holdout_days: int,
) -> RetrainDecision | None:
    """A retrain the last drift retrain left due (None when none is), once its cooldown is over.

    * `new_regime`: the last window held days before its onset (they weighed PRE_ONSET_WEIGHT) and
      the new regime has since gained REGIME_FOLLOW_UP_DAYS labelled training days: a retrain learns
      more of it, until a window holds the new regime alone.
    * `episode_settled`: the drift episode that retrain answered has been quiet for more than
      ONSET_MAX_GAP_DAYS days, the champion trained on days before the episode's last flagged day L
      (the data was still moving), and SETTLED_FOLLOW_UP_DAYS training days plus a holdout are labelled
      after L: a retrain learns the regime the change settled in (onset L + 1).
    Only a retrain whose challenger was promoted (the holdout agreed the data had changed) leaves a
    follow-up due: an episode nobody retrained for, or whose retrain found nothing better (a false
    alarm, a lone drifted day), does not.
    """
    promoted = bool(last.train_days) and last.champion_trained_until == max(last.train_days)
    if last.onset is None or not promoted:
        return None
    latest = max((d.day for d in drift_days), default=today)
    labelled = sorted(set(labelled_days))
    flagged = sorted({d.day for d in drift_days if d.material} | {p.day for p in performance_days if p.below_band})
    settled = flagged[-1] if flagged and flagged[-1] >= last.onset else None
    if (
        settled is not None
        and (today - settled).days > ONSET_MAX_GAP_DAYS
        and (last.champion_trained_until is None or last.champion_trained_until < settled)
        and sum(d > settled for d in labelled) >= SETTLED_FOLLOW_UP_DAYS + holdout_days
    ):
        onset = settled + dt.timedelta(days=1)
        why = (
            f"the drift since {last.onset} has been quiet since {settled}; the champion trained on days before it ended"
        )
        return RetrainDecision(True, "episode_settled", why, [], {}, latest, onset)
    before = [d for d in last.train_days if d < last.onset]
    regime_in_window = len(last.train_days) - len(before)
    regime_now = sum(d >= last.onset for d in labelled) - holdout_days
    if before and regime_now >= regime_in_window + REGIME_FOLLOW_UP_DAYS:
        why = (
            f"the new regime since {last.onset} has {regime_now} labelled training days, "
            f"{regime_in_window} when it last trained with {len(before)} days before it"
        )
        return RetrainDecision(True, "new_regime", why, [], {}, latest, last.onset)
    return None


def retrain_decision(
    drift_days: Sequence[DriftDay],
    performance_days: Sequence[PerformanceDay],
    *,
    last_retrain: dt.date | None,
    today: dt.date,
    m_of_n: tuple[int, int] = (2, 3),
    cooldown_days: int = 3,
    last_window: LastWindow | None = None,
    labelled_days: Sequence[dt.date] = (),
    holdout_days: int = 2,
) -> RetrainDecision:
    """The documented rule.

    Retrain when, and only when, the cooldown since the last retrain is over and either
    * drift is material and persistent: at least M of the last N daily drift reports found it
      material (:attr:`DriftDay.material`: two or more features beyond their learned thresholds,
      and they matter to the champion or its performance slips: :attr:`DriftDay.verdict`); or
    * realized performance left its band on at least M of the last N labelled days; or
    * the last drift retrain left a follow-up due (:func:`follow_up`: the new regime grew, or the
      change settled after the champion trained).
    """
    drift_sorted = sorted(drift_days, key=lambda d: d.day)
    latest = drift_sorted[-1].day if drift_sorted else None
    if drift_sorted and drift_sorted[-1].verdict == "broken_input":
        broken = drift_sorted[-1].broken_features
        return RetrainDecision(
            False, "broken_input", f"no usable values in {', '.join(broken)} on {latest}: alert, do not retrain",
            broken, {}, latest,
        )  # fmt: skip
    if last_retrain is not None and (today - last_retrain).days < cooldown_days:
        return RetrainDecision(
            False, "cooldown", f"last retrain {last_retrain}, cooldown {cooldown_days} days", [], {}, latest
        )
    m, n = m_of_n
    recent = drift_sorted[-n:]
    drifted = [d for d in recent if d.verdict == "drift"]
    if len(drifted) >= m:
        features = sorted({f for d in drifted for f in d.drifted_features})
        scores: dict[str, float] = {}
        for d in drifted:
            for name, score in d.scores.items():
                scores[name] = max(scores.get(name, 0.0), score)
        days = ", ".join(str(d.day) for d in drifted)
        return RetrainDecision(
            True, f"drift_{m}_of_{n}", f"drift on {len(drifted)} of the last {len(recent)} days ({days})",
            features, scores, latest, drift_onset(drift_days, performance_days),
        )  # fmt: skip
    # One day's AUC on a day's examples is noisy; the same M-of-N persistence applies.
    performance = sorted(performance_days, key=lambda p: p.day)[-n:]
    below = [p for p in performance if p.below_band]
    if len(below) >= m:
        days = ", ".join(f"{p.day} (AUC {p.auc:.3f})" if p.auc is not None else str(p.day) for p in below)
        return RetrainDecision(
            True, f"performance_below_band_{m}_of_{n}", f"AUC below its band on {days}", [], {},
            latest or performance[-1].day, drift_onset(drift_days, performance_days),
        )  # fmt: skip
    if last_window is not None:
        due = follow_up(
            drift_days, performance_days, last_window, today=today, labelled_days=labelled_days,
            holdout_days=holdout_days,
        )  # fmt: skip
        if due is not None:
            return due
    unimpactful = [d for d in recent if d.verdict == "drift_without_impact"]
    if len(unimpactful) + len(drifted) >= m:
        impact = max(d.impact or 0.0 for d in unimpactful)
        return RetrainDecision(
            False, "drift_without_impact",
            f"drift on {len(unimpactful) + len(drifted)} of the last {len(recent)} days, but the drifted features "
            f"carry at most {impact:.0%} of the champion's importance and its performance holds",
            sorted({f for d in unimpactful for f in d.drifted_features}), {}, latest,
        )  # fmt: skip
    return RetrainDecision(
        False, "no_trigger", f"{len(drifted)} of the last {len(recent)} days drifted (< {m})", [], {}, latest
    )
