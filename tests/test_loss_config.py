"""``loss.*``: picking a relative of HEX, and the combinations refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from hexssl.build import check_names, run_denominator
from hexssl.config import ConfigError, load_config
from hexssl.losses import HEXDenominator, InfoNCEDenominator
from hexssl.losses.relatives import DecoupledDenominator

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


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["loss.denominator=decopled"], r"loss.denominator='decopled' is unknown; valid: "),
        (["loss.denominator=decoupled", "hex.enabled=true"], "both replace the InfoNCE"),
        (["loss.sigma=0.5"], r"loss.sigma=0.5 is not read by loss.denominator=infonce"),
        (["loss.denominator=decoupled", "loss.sigma=0"], r"loss.sigma=0.0 must be > 0"),
        (["loss.denominator=decoupled", "loss.sigma=abc"], r"'loss.sigma' = 'abc'"),
        (["loss.denomintor=decoupled"], "did you mean 'denominator'"),
    ],
)
def test_bad_values_and_combinations_fail_in_one_line(overrides, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message) as err:
        denominator(*overrides)
    assert "\n" not in str(err.value)


def test_a_relative_on_a_method_without_a_denominator_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"needs a contrastive method .*barlow has no InfoNCE"):
        denominator("loss.denominator=decoupled", method="barlow")
