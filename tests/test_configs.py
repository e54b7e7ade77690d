"""The YAML presets under configs/ and the config loader's error messages.

Every preset must load and name things that exist; HEX variants differ from their base
only in the hex section (and the run name); the CPU presets stay small enough for a
2-core machine.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path

import pytest

from hexssl.backbones import BACKBONES
from hexssl.build import build_denominator
from hexssl.config import ConfigError, RunConfig, check_params, load_config, to_dict
from hexssl.data.datamodule import DEFAULT_SPLITS
from hexssl.methods import METHODS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
METHOD_NAMES = ["simclr", "moco_v2", "moco_v3", "nnclr", "byol", "barlow", "vicreg", "all4one"]
NON_CONTRASTIVE = {"byol", "barlow", "vicreg"}
DATASETS = [
    "cifar10", "cifar100", "stl10", "imagenet100", "imagenet", "tiny-imagenet-hier50",
    "synthetic",
]  # fmt: skip
VARIANTS = ["", "-hex", "-cpu", "-cpu-hex"]
PRESETS = sorted(p for p in CONFIGS.glob("*/*.yaml") if p.parent.name != "_base")
LAZY = {"imagenet", "imagenet100"}  # decoded on access: subset by limit_train_batches


def rel(p: Path) -> str:
    return str(p.relative_to(CONFIGS))


@functools.cache
def cached(path: Path) -> RunConfig:
    """Each preset parsed once (the tests only read the result)."""
    return load_config(path)


def preset(method: str, name: str) -> RunConfig:
    return cached(CONFIGS / method / f"{name}.yaml")


# ------------------------------------------------------------------------ the grid
def test_every_method_and_dataset_has_all_four_presets() -> None:
    expected = {f"{m}/{d}{v}.yaml" for m in METHOD_NAMES for d in DATASETS for v in VARIANTS}
    assert {rel(p) for p in PRESETS} == expected


@pytest.mark.parametrize("path", PRESETS, ids=rel)
def test_preset_loads_and_names_things_that_exist(path: Path) -> None:
    cfg = cached(path)
    assert cfg.method.name in METHOD_NAMES
    if cfg.method.name in METHODS:  # all4one may not be registered yet
        check_params(cfg.method.params, METHODS[cfg.method.name].Params(), "method.params.")
    assert cfg.data.dataset in DEFAULT_SPLITS
    assert cfg.backbone.name in BACKBONES
    accepted = inspect.signature(BACKBONES[cfg.backbone.name]).parameters
    assert set(cfg.backbone.kwargs) <= set(accepted)
    build_denominator(cfg.hex, cfg.trainer.max_epochs)  # raises on a bad hex section


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("_base/*.yaml")), ids=rel)
def test_shared_base_loads(path: Path) -> None:
    assert cached(path).method.name == "simclr"  # bases leave the method to the preset


def test_run_names_are_unique_and_match_the_file() -> None:
    names = [cached(p).name for p in PRESETS]
    assert len(set(names)) == len(names)
    for p, name in zip(PRESETS, names):
        assert name == f"{p.parent.name}-{p.stem}"


# ------------------------------------------------------------------------ HEX variants
@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("base", [d + s for d in DATASETS for s in ("", "-cpu")])
def test_hex_variant_only_switches_hex_on(method: str, base: str) -> None:
    plain, hexed = preset(method, base), preset(method, f"{base}-hex")
    a, b = to_dict(plain), to_dict(hexed)
    assert b.pop("name") == a.pop("name") + "-hex"
    assert a.pop("hex")["enabled"] is False
    h = b.pop("hex")
    assert a == b, "a HEX variant may change only the hex section and the run name"
    assert h["enabled"] and h["threshold"] == "adaptive" and h["variant"] == "paper"
    assert (h["q"], h["beta"], h["tau_plus"]) == (0.99, 1.0, 0.1)  # HEX_SPEC 4-5
    assert h["warmup_epochs"] == (1.0 if base.endswith("-cpu") else 10.0)
    if method in NON_CONTRASTIVE:
        assert (h["alpha"], h["temperature"]) == (0.1, 0.1)  # HEX_SPEC 6


# ------------------------------------------------------------------------ sizes
@pytest.mark.parametrize("path", [p for p in PRESETS if "-cpu" in p.stem], ids=rel)
def test_cpu_presets_are_small(path: Path) -> None:
    cfg = cached(path)
    assert (cfg.trainer.accelerator, cfg.trainer.precision, cfg.data.num_workers) == (
        "cpu", "32", 0,
    )  # fmt: skip
    assert cfg.backbone.name == "resnet18"
    assert cfg.backbone.kwargs == {"stem": "cifar", "width": 16}
    assert cfg.data.image_size == 32 and 128 <= cfg.data.batch_size <= 256
    assert cfg.trainer.max_epochs <= 6 and cfg.optim.warmup_epochs <= 1
    if cfg.data.dataset in LAZY:
        assert cfg.trainer.limit_train_batches < 0.1 and not cfg.eval.knn_at_end
    elif cfg.data.dataset != "synthetic":
        assert cfg.data.options["max_train_samples"] <= 10000


@pytest.mark.parametrize("path", [p for p in PRESETS if "-cpu" not in p.stem], ids=rel)
def test_full_size_presets_follow_the_reference_setup(path: Path) -> None:
    cfg = cached(path)
    assert (cfg.trainer.accelerator, cfg.trainer.precision) == ("gpu", "16-mixed")
    assert cfg.data.batch_size == 256  # HEX_SPEC 7
    assert cfg.optim.name == ("sgd" if cfg.method.name == "moco_v2" else "lars")
    if cfg.data.dataset == "synthetic":
        return
    assert cfg.backbone.name == "resnet50"
    stem = "imagenet" if cfg.data.dataset in {"stl10", *LAZY} else "cifar"
    assert cfg.backbone.kwargs["stem"] == stem
    assert cfg.trainer.max_epochs == (100 if cfg.data.dataset in LAZY else 400)


def test_tiny_imagenet_reads_the_shared_archive() -> None:
    for name, size in (("tiny-imagenet-hier50", 64), ("tiny-imagenet-hier50-cpu", 32)):
        cfg = preset("simclr", name)
        assert cfg.data.dataset == "imagefolder"
        assert cfg.data.root == "../shared/data/tiny-imagenet-hier50.tar.gz"
        assert cfg.data.options["image_size"] == size == cfg.data.image_size


def test_demo_preset() -> None:
    """configs/simclr/synthetic-cpu(-hex).yaml: about 2 minutes per run on 2 cores."""
    cfg = preset("simclr", "synthetic-cpu")
    assert cfg.data.dataset == "synthetic" and cfg.data.options == {}  # default 5,000 images
    assert cfg.backbone.kwargs["width"] == 16 and cfg.data.batch_size == 128
    assert 4 <= cfg.trainer.max_epochs <= 6
    assert cfg.eval.purity_every_n_steps == 20
    assert preset("simclr", "synthetic-cpu-hex").hex.warmup_epochs == 1


# ------------------------------------------------------------------ loader errors
def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_unknown_key_names_it_and_suggests(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'optim\.lrr'.*did you mean 'lr'"):
        load_config(write(tmp_path, "optim:\n  lrr: 0.3\n"))
    with pytest.raises(ConfigError, match=r"'optim\.lrr'.*did you mean 'lr'"):
        load_config(None, ["optim.lrr=0.3"])
    with pytest.raises(ConfigError, match=r"'optm'.*did you mean 'optim'"):
        load_config(None, ["optm.lr=0.3"])


def test_unknown_key_in_an_inherited_preset(tmp_path: Path) -> None:
    base = CONFIGS / "simclr" / "synthetic-cpu.yaml"
    p = write(tmp_path, f"defaults: {base}\nhex:\n  tau_pluss: 0.1\n")
    with pytest.raises(ConfigError, match=r"'hex\.tau_pluss'.*did you mean 'tau_plus'"):
        load_config(p)


def test_wrong_type_names_key_value_and_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'optim\.lr' = 'fast' \(str\): expected float"):
        load_config(write(tmp_path, "optim:\n  lr: fast\n"))
    with pytest.raises(ConfigError, match=r"'hex\.enabled' = 'maybe' \(str\): expected bool"):
        load_config(None, ["hex.enabled=maybe"])
    with pytest.raises(ConfigError, match=r"'trainer\.max_epochs' = 1\.5 \(float\): expected int"):
        load_config(None, ["trainer.max_epochs=1.5"])


def test_overrides_parse_as_yaml_scalars() -> None:
    cfg = load_config(
        CONFIGS / "simclr" / "cifar100.yaml",
        ["optim.lr=0.3", "hex.variant=reference", "trainer.devices=2"],
    )
    assert cfg.optim.lr == 0.3 and isinstance(cfg.optim.lr, float)
    assert cfg.hex.variant == "reference"
    assert cfg.trainer.devices == 2 and isinstance(cfg.trainer.devices, int)
    assert cfg.data.dataset == "cifar100"  # the rest of the preset is kept


def test_override_without_equals_sign() -> None:
    with pytest.raises(ConfigError, match=r"key\.sub=value"):
        load_config(None, ["optim.lr"])


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.yaml"):
        load_config(CONFIGS / "simclr" / "nope.yaml")


def test_missing_defaults_base(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*missing-base\.yaml"):
        load_config(write(tmp_path, "defaults: missing-base.yaml\n"))
