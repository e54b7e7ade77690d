"""HEX's relatives as arms of a study: the smoke protocol, refusals at load, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hexssl.errors import ConfigError
from hexssl.study import Study, arm_config, load_protocol, run_study, study_report

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "benchmarks" / "relatives_smoke_protocol.yaml"
DENOMINATORS = {  # arm -> (loss.denominator, hex.enabled)
    "simclr": ("infonce", False),
    "simclr-hex-paper": ("infonce", True),
    "simclr-decoupled": ("decoupled", False),
    "simclr-dclw": ("decoupled", False),
    "simclr-debiased": ("debiased", False),
    "simclr-hard": ("hard", False),
    "moco_v2-hard": ("hard", False),
}


def test_smoke_protocol_has_an_arm_per_relative() -> None:
    p = load_protocol(SMOKE)
    assert list(p.arms) == list(DENOMINATORS)
    for arm, (name, hex_on) in DENOMINATORS.items():
        cfg = arm_config(p, arm, 0, "runs")
        assert (cfg.loss.denominator, cfg.hex.enabled) == (name, hex_on), arm
        assert cfg.data.dataset == "synthetic" and cfg.trainer.accelerator == "cpu"
    assert arm_config(p, "simclr-dclw", 0, "runs").loss.sigma == 0.5
    hard = arm_config(p, "simclr-hard", 0, "runs").loss
    assert (hard.beta, hard.tau_plus) == (1.0, 0.1)
    assert ("simclr-hex-paper", "simclr-decoupled") in p.comparisons


@pytest.mark.parametrize(
    "arm,message",
    [
        ("{hex: {enabled: true}, loss: {denominator: decoupled}}", "both replace the InfoNCE"),
        ("{method: {name: barlow}, loss: {denominator: hard}}", "needs a contrastive method"),
        ("{loss: {denominator: hard, sigma: 0.5}}", "loss.sigma=0.5 is not read by"),
        ("{loss: {denominator: dcl}}", "loss.denominator='dcl' is unknown"),
    ],
)
def test_a_nonsense_arm_fails_when_the_protocol_loads(
    tmp_path: Path, arm: str, message: str
) -> None:
    bad = tmp_path / "p.yaml"
    text = SMOKE.read_text().replace("\narms:\n", f"\narms:\n  nonsense: {arm}\n")
    bad.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_protocol(bad)


def _check_results(c: Study, arms: list[str]) -> None:
    for arm in arms:
        res = json.loads((c.results_dir / f"{arm}-s0.json").read_text())
        name, hex_on = DENOMINATORS[arm]
        assert res["config"]["loss"]["denominator"] == name, arm
        assert res["config"]["hex"]["enabled"] is hex_on, arm
        assert 0.0 <= res["knn_class_top1"] <= 100.0 and 0.0 <= res["linear_top1"] <= 100.0, arm
        assert (res["final_eps"] is None) is not hex_on, arm  # relatives have no threshold
        assert (c.results_dir / "weights" / f"{arm}-s0.safetensors").is_file(), arm


def test_every_relative_runs_the_smoke_protocol_and_reports(tmp_path: Path) -> None:
    """All arms, the protocol's 2 epochs, then the study report's paired rows (~20 s)."""
    p = load_protocol(SMOKE)
    c = Study(p, tmp_path / "runs", tmp_path / "res", list(p.arms), [0], [])
    run_study(c)
    _check_results(c, list(p.arms))
    report = study_report(c.results_dir, tmp_path / "report")
    for a, b in p.comparisons:
        assert f"| {a} - {b} | knn_class_top1 |" in report
