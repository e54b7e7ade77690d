"""hexssl.compat: the authors' solo-learn-style YAML -> hexssl configs.

Fixtures (written for these tests, in the layout of github.com/olivesgatech/HEX):
- simclr_cifar100_hex_adaptive.yaml: SimCLR + HEX_adaptive on CIFAR-100, inline
  augmentations;
- simclr_cifar100_type_adaptive.yaml: the same with ``type: 'adaptive'``, which their
  SimCLR code has no branch for, and augmentations through Hydra's ``defaults``;
- nnclr_cifar100_type_adaptive.yaml: NNCLR with ``type: 'adaptive'``, which their NNCLR
  code ran as fixed-threshold HEX.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from hexssl.compat import convert_dict, convert_file
from hexssl.config import ConfigError, RunConfig, load_config

FIXTURES = Path(__file__).parent / "fixtures"
HEX_ADAPTIVE = FIXTURES / "simclr_cifar100_hex_adaptive.yaml"
TYPE_ADAPTIVE = FIXTURES / "simclr_cifar100_type_adaptive.yaml"
NNCLR_ADAPTIVE = FIXTURES / "nnclr_cifar100_type_adaptive.yaml"


def convert_and_load(path: Path, tmp_path: Path) -> tuple[RunConfig, list[str], str]:
    """Convert a fixture, write the YAML and load it as a preset would be."""
    text, notes = convert_file(path)
    out = tmp_path / "ours.yaml"
    out.write_text(text)
    return load_config(out), notes, text


def minimal(**extra: Any) -> dict[str, Any]:
    """The smallest config their code accepts, plus ``extra`` top-level keys."""
    base: dict[str, Any] = {
        "method": "simclr",
        "backbone": {"name": "resnet18"},
        "data": {"dataset": "cifar10", "train_path": "./datasets"},
        "optimizer": {"name": "lars", "batch_size": 256, "lr": 0.4},
        "max_epochs": 400,
    }
    base.update(extra)
    return base


def warnings(notes: list[str]) -> list[str]:
    return [n for n in notes if n.startswith("WARNING")]


def leaf_paths(node: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every key of nested mappings; lists count as one leaf."""
    if not isinstance(node, dict):
        return [prefix]
    return [p for k, v in node.items() for p in leaf_paths(v, f"{prefix}{k}.")] or [prefix]


def accounted(path: str, notes: list[str]) -> bool:
    """A note maps or ignores the key itself or a section holding it."""
    parts = path.split(".")
    heads = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return any(n.startswith((f"{h} ->", f"{h} ignored:")) for n in notes for h in heads)


# ------------------------------------------------------------------------ fixtures
def test_hex_adaptive_fixture(tmp_path: Path) -> None:
    cfg, notes, _ = convert_and_load(HEX_ADAPTIVE, tmp_path)
    assert cfg.name == "simclr_400_cifar100_hex_adaptive" and cfg.seed == 5
    assert cfg.method.name == "simclr"
    assert cfg.method.params == {"proj_hidden": 2048, "proj_out": 128, "temperature": 0.1}
    assert (cfg.backbone.name, cfg.backbone.kwargs) == ("resnet50", {"stem": "cifar"})
    h = cfg.hex
    assert h.enabled and h.threshold == "adaptive" and h.variant == "paper"
    assert (h.beta, h.tau_plus, h.eps0, h.eps_min) == (1.0, 0.1, 0.9, 0.3)
    assert (h.schedule, h.epoch_step, h.step_down) == ("step", 100.0, 0.1)
    assert h.warmup_epochs == 11.0  # their test was current_epoch <= warm_epoch
    d = cfg.data
    assert (d.dataset, d.root, d.batch_size, d.num_workers) == ("cifar100", "./datasets", 256, 16)
    assert (d.image_size, d.augment) == (32, "simclr")  # one pipeline, two crops: symmetric
    assert d.aug_overrides["brightness"] == 0.8 and d.aug_overrides["crop_scale"] == [0.08, 1.0]
    assert (d.aug_overrides["blur_p"], d.aug_overrides["solar_p"]) == (0.0, 0.0)
    o = cfg.optim
    assert (o.name, o.lr, o.weight_decay, o.eta, o.exclude_bias_norm) == (
        "lars", 0.4, 1e-4, 0.02, True,
    )  # fmt: skip
    assert o.classifier_lr == 0.1
    t = cfg.trainer
    assert (t.max_epochs, t.devices, t.accelerator, t.precision) == (400, 1, "gpu", "16-mixed")
    assert cfg.resume == "auto"
    assert not warnings(notes)


def test_hex_adaptive_fixture_notes_where_their_code_differed() -> None:
    _, notes = convert_file(HEX_ADAPTIVE)
    text = "\n".join(notes)
    assert "hex.variant=reference" in text and "removed the positive and the neighbours" in text
    assert "quantile over the full row" in text
    assert "'cuda:0'" in text and "batch size 256" in text
    assert "current_epoch <= 10" in text
    assert "optimizer.weight_decay -> optim.weight_decay=0.0001" in notes
    assert "optimizer.kwargs.clip_lr ignored: hexssl's LARS does not clip" in text


def test_type_adaptive_fixture_translates_the_intent(tmp_path: Path) -> None:
    cfg, notes, text = convert_and_load(TYPE_ADAPTIVE, tmp_path)
    assert cfg.hex.enabled and cfg.hex.threshold == "adaptive"  # what the file says
    (warning,) = warnings(notes)
    assert notes[0] == warning  # printed first, not lost among the mapping notes
    assert "no branch for type 'adaptive'" in warning
    assert "loss variable is never assigned" in warning  # what their SimCLR code did
    assert "--as-run" in warning
    assert "type -> hex.enabled=true" in "\n".join(notes)
    comments = " ".join(ln[2:] for ln in text.splitlines() if ln.startswith("# "))
    assert "never assigned" in comments  # also kept in the converted file
    assert (cfg.hex.beta, cfg.hex.tau_plus, cfg.hex.warmup_epochs) == (1.0, 0.1, 11.0)
    assert cfg.hex.variant == "paper"
    assert cfg.trainer.precision == "16-mixed"  # solo-learn's 16 meant AMP
    assert cfg.data.root is None and any(n.startswith("data.train_path ignored") for n in notes)
    # augmentations came through Hydra's defaults: augmentations/symmetric.yaml
    assert any(n.startswith("defaults -> read augmentations/symmetric.yaml") for n in notes)
    assert cfg.data.augment == "simclr" and cfg.data.aug_overrides["hue"] == 0.2


@pytest.mark.parametrize("as_run", [False, True])
@pytest.mark.parametrize("path", [HEX_ADAPTIVE, NNCLR_ADAPTIVE], ids=lambda p: p.stem)
def test_every_key_of_their_file_is_accounted_for_as_run_too(path: Path, as_run: bool) -> None:
    their = yaml.safe_load(path.read_text())
    _, notes = convert_file(path, as_run=as_run)
    missing = [p for p in leaf_paths(their) if not accounted(p.rstrip("."), notes)]
    assert not missing, f"keys neither mapped nor ignored: {missing}"


@pytest.mark.parametrize("path", [HEX_ADAPTIVE, TYPE_ADAPTIVE], ids=lambda p: p.stem)
def test_every_key_of_their_file_is_accounted_for(path: Path) -> None:
    their = yaml.safe_load(path.read_text())
    _, notes = convert_file(path)
    missing = [p for p in leaf_paths(their) if not accounted(p.rstrip("."), notes)]
    assert not missing, f"keys neither mapped nor ignored: {missing}"


def test_unknown_keys_are_reported_not_dropped() -> None:
    their = minimal(my_flag=True)
    their["data"]["shards"] = 4
    their["optimizer"]["kwargs"] = {"trust_clip": 1.0}
    their["method_kwargs"] = {"mystery": 3}
    _, notes = convert_dict(their)
    for key in ("my_flag", "data.shards", "optimizer.kwargs.trust_clip", "method_kwargs.mystery"):
        assert any(n.startswith(f"{key} ignored:") for n in notes), key
    for p in leaf_paths(their):
        assert accounted(p.rstrip("."), notes), p


def test_converted_dict_loads_with_load_config(tmp_path: Path) -> None:
    ours, _ = convert_dict(minimal(type="HEX_fixed", distance_thresh=0.9))
    out = tmp_path / "ours.yaml"
    out.write_text(yaml.safe_dump(ours))
    assert load_config(out).hex.threshold == "fixed"


def test_input_is_not_modified() -> None:
    their = minimal(type="HEX_adaptive", method_kwargs={"temperature": 0.1, "beta": 1})
    before = copy.deepcopy(their)
    convert_dict(their)
    assert their == before


# -------------------------------------------------------- type 'adaptive' and --as-run
BARLOW_ADAPTIVE = """
name: "barlow_cifar100_adaptive"
method: "barlow_twins"
type: 'adaptive'
alpha: 0.1
temperature: 0.1
warm_epoch: 10
backbone: {name: "resnet18"}
method_kwargs: {proj_hidden_dim: 2048, proj_output_dim: 2048, scale_loss: 0.1}
data: {dataset: cifar100, train_path: "./datasets"}
optimizer: {name: "lars", batch_size: 256, lr: 0.3}
max_epochs: 400
"""


def test_nnclr_type_adaptive_default_is_adaptive_hex_with_their_run_in_a_warning(
    tmp_path: Path,
) -> None:
    cfg, notes, _ = convert_and_load(NNCLR_ADAPTIVE, tmp_path)
    h = cfg.hex
    assert h.enabled and h.threshold == "adaptive" and h.variant == "paper"
    assert (h.beta, h.tau_plus) == (0.5, 0.1 / 2)  # the file's values
    (warning,) = warnings(notes)
    assert "runs HEX with a fixed threshold" in warning and "--as-run` reproduces" in warning
    assert cfg.method.params.get("stacked") is None


def test_nnclr_type_adaptive_as_run_is_their_fixed_min_max_step_threshold(
    tmp_path: Path,
) -> None:
    text, notes = convert_file(NNCLR_ADAPTIVE, as_run=True)
    out = tmp_path / "ours.yaml"
    out.write_text(text)
    cfg = load_config(out)
    h = cfg.hex
    assert h.enabled and h.threshold == "fixed" and h.variant == "reference"  # min-max rows
    assert (h.schedule, h.eps0, h.step_down, h.epoch_step) == ("step", 0.95, 0.25, 100.0)
    assert h.eps_min == pytest.approx(0.95 - 3 * 0.25)  # their step had no floor
    assert h.warmup_epochs == 0.0  # their fixed branch had no warm-up
    assert (h.beta, h.tau_plus) == (1.0, 0.1)  # hard-coded in their NNCLR loss
    assert cfg.method.params["stacked"] is True  # their 2B x 2B matrix
    assert not warnings(notes)
    assert "--as-run" in text.splitlines()[0]


@pytest.mark.parametrize("method", ["simclr", "barlow_twins"])
def test_as_run_refuses_types_their_code_crashed_on(method: str) -> None:
    their = yaml.safe_load(BARLOW_ADAPTIVE) | {"method": method}
    if method == "simclr":
        del their["method_kwargs"]
    ours, _ = convert_dict(their)  # the default translates the intent
    assert ours["hex"]["enabled"] and ours["hex"]["threshold"] == "adaptive"
    with pytest.raises(ConfigError, match=rf"their released {method} code runs nothing") as err:
        convert_dict(their, as_run=True)
    assert "never assigned" in str(err.value) and "without --as-run" in str(err.value)
    assert "HEX with the adaptive threshold" in str(err.value)


def test_all4one_adaptive_is_its_own_adaptive_branch_in_both_readings() -> None:
    their = minimal(method="all4one", type="adaptive")
    runs = {as_run: convert_dict(their, as_run=as_run) for as_run in (False, True)}
    for ours, notes in runs.values():
        assert (ours["hex"]["enabled"], ours["hex"]["threshold"]) == (True, "adaptive")
        assert not warnings(notes)
    own_name = "note: type 'adaptive' is their all4one code's own name for HEX with the "
    assert any(n.startswith(own_name) for n in runs[False][1])
    assert runs[True][0]["hex"]["variant"] == "reference"


def test_as_run_of_an_explicit_branch_uses_their_objective() -> None:
    ours, _ = convert_dict(minimal(type="HEX_adaptive"), as_run=True)
    assert ours["hex"]["variant"] == "reference" and ours["hex"]["threshold"] == "adaptive"
    ours, _ = convert_dict(minimal(method="mocov2plus", type="HEX_adaptive"), as_run=True)
    assert ours["hex"]["enabled"] is False  # their fork had no HEX for MoCo


def test_cli_as_run_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hexssl.cli import main

    out = tmp_path / "ours.yaml"
    assert main(["convert-config", str(NNCLR_ADAPTIVE), "--as-run", "--out", str(out)]) == 0
    assert load_config(out).hex.threshold == "fixed"
    crash = tmp_path / "barlow.yaml"
    crash.write_text(BARLOW_ADAPTIVE)
    assert main(["convert-config", str(crash), "--as-run"]) != 0
    assert "their released barlow_twins code runs nothing" in capsys.readouterr().err


# ------------------------------------------------------------------------ HEX keys
def test_fixed_threshold_and_cosine_schedule() -> None:
    ours, notes = convert_dict(
        minimal(
            type="HEX_fixed",
            distance_thresh=0.9,
            distance_min=0.3,
            step_type="cosine",
            warm_epoch=10,
        )
    )
    h = ours["hex"]
    assert (h["enabled"], h["threshold"], h["schedule"]) == (True, "fixed", "cosine")
    assert (h["eps0"], h["eps_min"]) == (0.9, 0.3)
    assert h["warmup_epochs"] == 0.0  # their HEX_fixed branch had no warm-up
    text = "\n".join(notes)
    assert "warm_epoch ignored:" in text
    assert "min-max normalised" in text and "fell much faster than a cosine" in text


def test_hex_keys_inside_method_kwargs() -> None:
    their = minimal(method_kwargs={"temperature": 0.2, "type": "HEX_adaptive", "tau_plus": 0.05})
    ours, notes = convert_dict(their)
    assert ours["hex"]["enabled"] and ours["hex"]["tau_plus"] == 0.05
    assert ours["method"]["params"] == {"temperature": 0.2}  # SimCLR's own temperature
    assert "method_kwargs.type -> hex.enabled=true" in "\n".join(notes)


def test_step_schedule_floor_note() -> None:
    kw = dict(type="HEX_fixed", step_type="step", distance_thresh=0.9, step_down=0.1)
    _, notes = convert_dict(minimal(**kw, epoch_step=100, distance_min=0.3))
    assert any("reaches 0.6, so hex.eps_min never binds" in n for n in notes)
    _, notes = convert_dict(minimal(**kw, epoch_step=100, distance_min=0.7))
    assert any("DOES bind" in n for n in notes)


@pytest.mark.parametrize(
    ("method", "type_", "enabled", "threshold", "says"),
    [
        # their VICReg branch is spelled 'Hex_adaptive': 'HEX_adaptive' fell to the oracle
        ("vicreg", "HEX_adaptive", True, "adaptive", "superclass oracle"),
        ("vicreg", "Hex_adaptive", True, "adaptive", None),
        # All4One's adaptive branch really is called 'adaptive'
        ("all4one", "adaptive", True, "adaptive", None),
        ("all4one", "HEX_adaptive", True, "adaptive", "attention term"),
        # NNCLR's final else is the fixed threshold; the name says adaptive
        ("nnclr", "adaptive", True, "adaptive", "fixed threshold"),
        ("simclr", "adaptive", True, "adaptive", "never assigned"),
        ("barlow_twins", "adaptive", True, "adaptive", "never assigned"),
        # no HEX code at all for MoCo in their fork
        ("mocov2plus", "HEX_adaptive", True, "adaptive", "plain loss"),
        ("simclr", "superclass", True, "superclass_oracle", None),
        ("simclr", "standard", False, "adaptive", None),
    ],
)
def test_type_resolution_per_method(
    method: str, type_: str, enabled: bool, threshold: str, says: str | None
) -> None:
    ours, notes = convert_dict(minimal(method=method, type=type_))
    assert (ours["hex"]["enabled"], ours["hex"]["threshold"]) == (enabled, threshold)
    found = warnings(notes)
    if says is None:
        assert not found
    else:
        assert len(found) == 1 and says in found[0]


def test_non_contrastive_alpha_and_temperature() -> None:
    their = minimal(method="barlow_twins", type="HEX_adaptive", alpha=0.1, temperature=0.1)
    their["method_kwargs"] = {"proj_hidden_dim": 2048, "proj_output_dim": 2048, "scale_loss": 0.1}
    ours, _ = convert_dict(their)
    assert ours["method"] == {
        "name": "barlow",
        "params": {"proj_hidden": 2048, "proj_out": 2048, "scale_loss": 0.1},
    }
    assert (ours["hex"]["alpha"], ours["hex"]["temperature"]) == (0.1, 0.1)


def test_top_level_temperature_is_unused_by_contrastive_methods() -> None:
    ours, notes = convert_dict(minimal(temperature=0.5))
    assert "temperature" not in ours.get("method", {}).get("params", {})
    assert any(n.startswith("temperature ignored:") for n in notes)


# ------------------------------------------------------------------ other sections
def test_numbers_written_without_a_dot() -> None:
    their = minimal()
    their["optimizer"].update(weight_decay="10e-6", kwargs={"eta": "2e-2"})
    ours, _ = convert_dict(their)
    assert ours["optim"]["weight_decay"] == pytest.approx(1e-5)
    assert ours["optim"]["eta"] == pytest.approx(0.02)


def test_lars_defaults_of_solo_learn() -> None:
    ours, notes = convert_dict(minimal())  # no optimizer.kwargs
    assert ours["optim"]["eta"] == 1e-3 and ours["optim"]["exclude_bias_norm"] is False
    assert any("LARS default 1e-3" in n for n in notes)


def test_devices_list_and_classifier_lr_scaling() -> None:
    their = minimal(devices=[0, 1], precision=16)
    their["optimizer"].update(batch_size=128, classifier_lr=0.1)
    ours, _ = convert_dict(their)
    assert ours["trainer"]["devices"] == 2 and ours["trainer"]["precision"] == "16-mixed"
    assert ours["data"]["batch_size"] == 128
    assert ours["optim"]["classifier_lr"] == pytest.approx(0.1 * 128 * 2 / 256)


def test_imagenet_paths_and_momentum() -> None:
    their = minimal(method="byol", momentum={"base_tau": 0.99, "final_tau": 1.0})
    their["data"] = {"dataset": "imagenet", "train_path": "/data/imagenet/train"}
    ours, notes = convert_dict(their)
    assert ours["data"]["root"] == "/data/imagenet"
    assert ours["data"]["image_size"] == 224
    assert ours["backbone"]["kwargs"] == {"stem": "imagenet"}
    assert ours["method"]["params"] == {"momentum_base": 0.99}
    assert any(n.startswith("momentum.final_tau ->") for n in notes)


def test_asymmetric_augmentations_become_per_view_lists() -> None:
    view: dict[str, Any] = {
        "rrc": {"crop_min_scale": 0.08, "crop_max_scale": 1.0},
        "color_jitter": {"prob": 0.8, "brightness": 0.4, "contrast": 0.4,
                         "saturation": 0.2, "hue": 0.1},
        "solarization": {"prob": 0.0},
        "crop_size": 32,
        "num_crops": 1,
    }  # fmt: skip
    other = copy.deepcopy(view)
    other["solarization"]["prob"] = 0.2
    ours, _ = convert_dict(minimal(augmentations=[view, other]))
    assert ours["data"]["augment"] == "byol"
    assert ours["data"]["aug_overrides"]["solar_p"] == [0.0, 0.2]
    assert ours["data"]["aug_overrides"]["brightness"] == 0.4


def test_multicrop_is_reported_not_converted() -> None:
    big = {"crop_size": 224, "num_crops": 2}
    small = {"crop_size": 96, "num_crops": 6}
    ours, notes = convert_dict(minimal(augmentations=[big, small]))
    assert "augment" not in ours["data"] and ours["data"]["image_size"] == 224
    assert any(n.startswith("augmentations ignored: 8 views") for n in notes)


# ------------------------------------------------------------------------- errors
def test_unknown_method_and_backbone_fail_with_the_valid_names() -> None:
    with pytest.raises(ConfigError, match=r"'swav' has no hexssl counterpart.*simclr"):
        convert_dict(minimal(method="swav"))
    with pytest.raises(ConfigError, match="'convnext_tiny' has no hexssl counterpart"):
        convert_dict(minimal(backbone={"name": "convnext_tiny"}))


def test_not_a_number() -> None:
    their = minimal()
    their["optimizer"]["lr"] = "fast"
    with pytest.raises(ConfigError, match=r"'optimizer\.lr' = 'fast': expected a number"):
        convert_dict(their)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        convert_file(FIXTURES / "nope.yaml")


def test_sync_batchnorm_maps_to_the_trainer_switch() -> None:
    ours, notes = convert_dict(minimal(sync_batchnorm=True, strategy="ddp"))
    assert ours["trainer"]["sync_batchnorm"] is True
    assert any(n.startswith("sync_batchnorm -> trainer.sync_batchnorm=true") for n in notes)
