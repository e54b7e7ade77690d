"""Config-only switching of HEX, registry and params validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import hexssl.methods
from hexssl.config import ConfigError
from hexssl.losses import HEXDenominator, InfoNCE, InfoNCEDenominator
from hexssl.methods import METHODS, SSLMethod, WeightedTerm, get_method
from hexssl.run.build import build_method

from .helpers import build, tiny_config


def loss_prefixes(method: SSLMethod) -> list[str]:
    """State-dict prefixes of the loss-only modules (denominators and the HEX term)."""
    loss_modules = (InfoNCEDenominator, HEXDenominator, WeightedTerm)
    return [
        f"{name}."
        for name, module in method.named_modules(remove_duplicate=False)
        if isinstance(module, loss_modules)
    ]


def model_state(method: SSLMethod) -> dict[str, tuple[int, ...]]:
    """Shapes of every state-dict entry that is not loss state (e.g. HEX's epoch buffer)."""
    skip = tuple(loss_prefixes(method))
    return {k: tuple(v.shape) for k, v in method.state_dict().items() if not k.startswith(skip)}


def infonces(method: SSLMethod) -> list[InfoNCE]:
    """The method's own InfoNCE losses (not the HEX term the base adds)."""
    extra = set(method.extra_term.modules()) if method.extra_term is not None else set()
    return [m for m in method.modules() if isinstance(m, InfoNCE) and m not in extra]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_hex_switch_changes_only_the_loss(name: str) -> None:
    torch.manual_seed(0)
    off, _ = build(tiny_config(name, "hex.enabled=false"))
    on, _ = build(tiny_config(name, "hex.enabled=true"))
    params = {n: p.shape for n, p in off.named_parameters()}
    assert params == {n: p.shape for n, p in on.named_parameters()}  # HEX adds no parameters
    assert model_state(off) == model_state(on)
    assert type(off.denominator) is InfoNCEDenominator
    if METHODS[name].contrastive:
        assert type(on.denominator) is HEXDenominator and on.extra_term is None
        assert infonces(on), "a contrastive method needs at least one InfoNCE"
        for m in (off, on):  # every InfoNCE uses the configured denominator (or its copy)
            for loss in infonces(m):
                assert type(loss.denominator) is type(m.denominator)
                assert loss.denominator.state_dict().keys() == m.denominator.state_dict().keys()
        shared = [loss.denominator is on.denominator for loss in infonces(on)]
        assert shared[0] and (all(shared) or name == "all4one")  # All4One: one state per term
    else:
        assert off.extra_term is None and isinstance(on.extra_term, WeightedTerm)
        assert type(on.denominator) is InfoNCEDenominator
        assert isinstance(on.extra_term.term.denominator, HEXDenominator)
        assert not infonces(on)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_contrastive_flag_and_defaults(name: str) -> None:
    cls = get_method(name)
    assert cls.contrastive is (name in {"simclr", "moco_v2", "moco_v3", "nnclr", "all4one"})
    params = cls.Params()
    if hasattr(params, "momentum_base"):
        assert 0.9 <= params.momentum_base < 1.0


def test_unknown_method_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"valid:.*moco_v2"):
        get_method("mocov2")
    cfg = tiny_config("simclr", "method.name=mocov2")
    _, dm = build(tiny_config("simclr"))
    with pytest.raises(ValueError, match=r"unknown method 'mocov2'.*'moco_v2'"):
        build_method(cfg, dm)


def test_unknown_param_suggests_the_right_key() -> None:
    cfg = tiny_config("moco_v2", "method.params.queue_sise=64")
    _, dm = build(tiny_config("simclr"))
    with pytest.raises(ConfigError, match=r"method\.params\.queue_sise.*did you mean 'queue_size'"):
        build_method(cfg, dm)


def test_param_types_are_checked() -> None:
    _, dm = build(tiny_config("simclr"))
    with pytest.raises(ConfigError, match="stacked"):
        build_method(tiny_config("nnclr", "method.params.stacked=maybe"), dm)


@pytest.mark.parametrize("name", ["moco_v3", "byol", "barlow"])
def test_multicrop_is_rejected_by_two_view_methods(name: str) -> None:
    method, dm = build(tiny_config(name, "data.augment=multicrop"))
    images, _, _, _ = next(iter(dm.train_dataloader()))
    with pytest.raises(ValueError, match="exactly 2 augmented views"):
        method.ssl_step(method.augment(images))


def test_methods_never_touch_hex_directly() -> None:
    """HEX reaches a method only as its denominator or the base's extra term (STYLE)."""
    folder = Path(hexssl.methods.__file__).parent
    for path in folder.glob("*.py"):
        text = path.read_text()
        assert "losses.hex" not in text and "HEXDenominator" not in text, path.name
