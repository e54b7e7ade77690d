"""``loss.*``: picking a relative of HEX, and the combinations refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from hexssl.config import ConfigError, load_config
from hexssl.losses import HEXDenominator, InfoNCEDenominator
from hexssl.losses.relatives import (
    RELATIVES,
    DebiasedDenominator,
    DecoupledDenominator,
    HardNegativeDenominator,
)
from hexssl.run.build import check_names, run_denominator

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FILES = [CONFIGS / "simclr.yaml", CONFIGS / "data" / "cifar10-cpu.yaml"]


def denominator(*overrides: str, method: str = "simclr"):  # type: ignore[no-untyped-def]
    cfg = load_config([CONFIGS / f"{method}.yaml", FILES[1]], list(overrides))
    check_names(cfg)
    return run_denominator(cfg, contrastive=method not in ("byol", "barlow", "vicreg")), cfg


def test_default_is_plain_infonce_and_hex_enabled_still_picks_hex() -> None:
    den, cfg = denominator()
    assert isinstance(den, InfoNCEDenominator) and cfg.loss.denominator == "infonce"
    den, cfg = denominator("hex.enabled=true")
    assert isinstance(den, HEXDenominator) and cfg.name == "simclr-cifar10-cpu-hex"


def test_decoupled_and_its_weighted_form() -> None:
    den, cfg = denominator("loss.denominator=decoupled")
    assert isinstance(den, DecoupledDenominator) and den.sigma is None
    assert cfg.name == "simclr-cifar10-cpu-decoupled"
    den, _ = denominator("loss.denominator=decoupled", "loss.sigma=0.5", "loss.detach_weights=true")
    assert den.sigma == 0.5 and den.detach_weights


def test_debiased_and_hard_with_defaults_and_values() -> None:
    den, cfg = denominator("loss.denominator=debiased")
    assert isinstance(den, DebiasedDenominator) and den.tau_plus == 0.1
    assert cfg.name == "simclr-cifar10-cpu-debiased"
    den, _ = denominator("loss.denominator=debiased", "loss.tau_plus=0.3")
    assert den.tau_plus == 0.3
    den, _ = denominator("loss.denominator=hard")
    assert isinstance(den, HardNegativeDenominator) and (den.beta, den.tau_plus) == (1.0, 0.1)
    den, _ = denominator("loss.denominator=hard", "loss.beta=0", "loss.tau_plus=0")
    assert (den.beta, den.tau_plus, den.detach_weights) == (0.0, 0.0, False)


@pytest.mark.parametrize("method", ["simclr", "moco_v2", "moco_v3", "nnclr", "all4one"])
@pytest.mark.parametrize("name", ["decoupled", "debiased", "hard"])
def test_every_contrastive_preset_takes_every_relative(method: str, name: str) -> None:
    den, cfg = denominator(f"loss.denominator={name}", method=method)
    assert type(den) is RELATIVES[name] and not cfg.hex.enabled


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["loss.denominator=decopled"], r"loss.denominator='decopled' is unknown; valid: "),
        (["loss.denominator=DCL"], r"unknown \(for DCL: loss.denominator=decoupled\); valid"),
        (["loss.denominator=dclw"], r"\(for DCLW: loss.denominator=decoupled loss.sigma=0.5\)"),
        (["loss.denominator=hcl"], r"\(for HCL: loss.denominator=hard\)"),
        (["loss.denominator=hex"], r"\(for HEX: hex.enabled=true\)"),
        (["loss.denominator=decoupled", "hex.enabled=true"], "both replace the InfoNCE"),
        (["loss.sigma=0.5"], r"loss.sigma=0.5 is not read by loss.denominator=infonce"),
        (["loss.denominator=decoupled", "loss.sigma=0"], r"loss.sigma=0.0 must be > 0"),
        (["loss.denominator=decoupled", "loss.sigma=abc"], r"'loss.sigma' = 'abc'"),
        (["loss.denomintor=decoupled"], "did you mean 'denominator'"),
        (["loss.denominator=debiased", "loss.beta=1"], r"loss.beta=1.0 is not read by loss.denom"),
        (
            ["loss.denominator=debiased", "loss.tau_plus=1"],
            r"loss.tau_plus=1.0 is outside \[0, 1\)",
        ),
        (["loss.denominator=hard", "loss.beta=-1"], r"loss.beta=-1.0 must be >= 0"),
        (["loss.denominator=hard", "loss.sigma=0.5"], r"read by: decoupled"),
        (["loss.denominator=decoupled", "loss.detach_weights=true"], "needs sigma"),
        (["loss.denominator=hard", "hex.enabled=true"], "set hex.enabled=false"),
    ],
)
def test_bad_values_and_combinations_fail_in_one_line(overrides, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message) as err:
        denominator(*overrides)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("method", ["byol", "barlow", "vicreg"])
def test_a_relative_on_a_method_without_a_denominator_is_refused(method: str) -> None:
    with pytest.raises(ConfigError, match=rf"needs a contrastive method .*{method} has no InfoNCE"):
        denominator("loss.denominator=hard", method=method)
