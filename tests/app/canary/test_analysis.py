"""The judge, on fixed figures: every rule passes, fails and stays inconclusive where it should.

No statistic here is computed over a random sample: the figures are written out, so each verdict
is the same on every run.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from modelserver.canary.analysis import Figures, Status, judge, psi
from modelship_contract.canary import DEFAULT

UNIFORM = {str(d): 100.0 for d in range(10)}


def figures(requests=1000.0, errors=0.0, p99=0.02, labels=None) -> Figures:
    labels = UNIFORM if labels is None else labels
    return Figures(requests=requests, errors=errors, p99_seconds=p99, labels=labels)


def status_of(verdict, name: str) -> Status:
    return next(c.status for c in verdict.checks if c.name == name)


def test_psi_is_zero_for_proportional_histograms_and_large_for_a_constant_label() -> None:
    assert psi(UNIFORM, {k: 3 * v for k, v in UNIFORM.items()}) == pytest.approx(0.0, abs=1e-12)
    constant = psi(UNIFORM, {"0": 1000.0})
    assert constant > 5  # far above any threshold in use
    # The smoothing keeps a label that one side never predicted finite.
    assert math.isfinite(psi({"0": 10.0}, {"1": 10.0}))
    with pytest.raises(ValueError, match="at least one count"):
        psi({}, UNIFORM)


def test_an_identical_canary_passes_every_rule() -> None:
    stable = figures(requests=9000.0, labels={k: 9 * v for k, v in UNIFORM.items()})
    verdict = judge(figures(), stable, DEFAULT)
    assert verdict.status is Status.PASS, verdict.summary()
    assert {c.name for c in verdict.checks} == {"error_rate", "p99_latency", "prediction_drift"}


def test_a_drifting_canary_fails_on_drift() -> None:
    verdict = judge(figures(labels={"0": 1000.0}), figures(), DEFAULT)
    assert verdict.status is Status.FAIL
    assert status_of(verdict, "prediction_drift") is Status.FAIL
    assert status_of(verdict, "error_rate") is Status.PASS


def test_too_few_predictions_are_inconclusive_never_a_failure() -> None:
    # The lost test's situation: ~55 requests and a PSI above the threshold. Too little evidence.
    small = figures(requests=55.0, labels={"0": 30.0, "1": 25.0})
    verdict = judge(small, figures(), DEFAULT)
    assert psi(UNIFORM, small.labels) > DEFAULT.drift_threshold
    assert verdict.status is Status.INCONCLUSIVE
    assert {c.status for c in verdict.checks} == {Status.INCONCLUSIVE}


def test_the_minimum_sample_applies_to_the_stable_side_too() -> None:
    verdict = judge(figures(), figures(requests=10.0, labels={"1": 10.0}), DEFAULT)
    assert verdict.status is Status.INCONCLUSIVE


def test_errors_above_the_margin_fail_and_within_it_pass() -> None:
    failing = judge(figures(errors=1000 * (DEFAULT.error_rate_margin + 0.005)), figures(), DEFAULT)
    assert status_of(failing, "error_rate") is Status.FAIL and failing.status is Status.FAIL
    within = judge(figures(errors=1000 * DEFAULT.error_rate_margin / 2), figures(), DEFAULT)
    assert status_of(within, "error_rate") is Status.PASS
    # Measured against the stable's own rate, not against zero.
    both = judge(figures(errors=50.0), figures(errors=45.0), DEFAULT)
    assert status_of(both, "error_rate") is Status.PASS


def test_a_canary_that_only_answers_errors_fails_even_without_predictions() -> None:
    verdict = judge(figures(errors=1000.0, p99=0.01, labels={}), figures(), DEFAULT)
    assert verdict.status is Status.FAIL
    assert status_of(verdict, "prediction_drift") is Status.INCONCLUSIVE


def test_latency_fails_only_above_both_the_ratio_and_the_absolute_margin() -> None:
    stable = figures(p99=0.05)
    # 3x slower but only 0.1 s: noise at this scale, not a regression.
    assert status_of(judge(figures(p99=0.15), stable, DEFAULT), "p99_latency") is Status.PASS
    slow = 0.05 + DEFAULT.p99_margin_seconds + 0.5
    verdict = judge(figures(p99=slow), stable, DEFAULT)
    assert status_of(verdict, "p99_latency") is Status.FAIL and verdict.status is Status.FAIL
    # Slower by more than the margin but within the ratio of a slow stable: pass.
    assert status_of(judge(figures(p99=1.5), figures(p99=1.0), DEFAULT), "p99_latency") is Status.PASS
    # No histogram yet on one side: inconclusive.
    assert status_of(judge(figures(p99=None), stable, DEFAULT), "p99_latency") is Status.INCONCLUSIVE


def test_thresholds_come_from_the_definition() -> None:
    strict = dataclasses.replace(DEFAULT, drift_threshold=0.0001)
    slightly = figures(labels={**UNIFORM, "0": 130.0})
    assert judge(slightly, figures(), DEFAULT).status is Status.PASS
    assert judge(slightly, figures(), strict).status is Status.FAIL


def test_the_verdict_reports_its_figures() -> None:
    data = judge(figures(), figures(), DEFAULT).to_dict()
    assert data["status"] == "pass"
    assert data["canary"]["requests"] == 1000.0 and data["stable"]["labels"]["3"] == 100.0
    assert [c["name"] for c in data["checks"]] == ["error_rate", "p99_latency", "prediction_drift"]
