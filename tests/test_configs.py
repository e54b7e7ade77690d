"""The composed presets under configs/ and the config loader.

Every method x dataset x HEX combination must load and name things that exist; switching
HEX on changes only the hex section (and the run name); CPU presets stay small enough
for a 2-core machine; the recipes each dataset file gives each method are spot-checked;
and the composition rules (order, ``defaults`` lists, ``by_method``, run names) hold.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path

import pytest
import yaml

from hexssl.backbones import BACKBONES
from hexssl.config import ConfigError, RunConfig, check_params, load_config, to_dict
from hexssl.data import build_dataset
from hexssl.data.datamodule import DEFAULT_SPLITS
from hexssl.methods import METHODS
from hexssl.run.build import build_denominator

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
METHOD_NAMES = ["simclr", "moco_v2", "moco_v3", "nnclr", "byol", "barlow", "vicreg", "all4one"]
NON_CONTRASTIVE = {"byol", "barlow", "vicreg"}
DATASETS = [
    "cifar10", "cifar100", "stl10", "imagenet100", "imagenet", "tiny-imagenet-hier50",
    "synthetic",
]  # fmt: skip
DATA = [d + s for d in DATASETS for s in ("", "-cpu")]
LAZY = {"imagenet", "imagenet100"}  # decoded on access: subset by limit_train_batches


@functools.cache
def compose(method: str, data: str, *overrides: str) -> RunConfig:
    """``configs/<method>.yaml configs/data/<data>.yaml overrides`` (parsed once)."""
    return load_config(
        [CONFIGS / f"{method}.yaml", CONFIGS / "data" / f"{data}.yaml"], list(overrides)
    )


# ------------------------------------------------------------------------ the tree
def test_tree_is_one_file_per_method_and_dataset() -> None:
    files = [p for p in CONFIGS.rglob("*") if p.is_file()]
    assert len(files) <= 80
    top = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    assert top == sorted([*METHOD_NAMES, "cpu", "simclr-synthetic-demo"])  # the demo's own
    data = {p.stem for p in (CONFIGS / "data").glob("*.yaml") if not p.stem.startswith("_")}
    assert data == set(DATA)


@pytest.mark.parametrize("hex_on", [False, True], ids=["plain", "hex"])
@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_every_combination_loads_and_validates(method: str, data: str, hex_on: bool) -> None:
    cfg = compose(method, data, f"hex.enabled={str(hex_on).lower()}")
    assert cfg.method.name == method and cfg.hex.enabled is hex_on
    check_params(cfg.method.params, METHODS[method].Params(), "method.params.")
    assert cfg.data.dataset in DEFAULT_SPLITS
    assert cfg.backbone.name in BACKBONES
    accepted = inspect.signature(BACKBONES[cfg.backbone.name]).parameters
    assert set(cfg.backbone.kwargs) <= set(accepted)
    build_denominator(cfg.hex, cfg.trainer.max_epochs)  # raises on a bad hex section
    assert cfg.name == f"{method}-{data}" + ("-hex" if hex_on else "")


@pytest.mark.parametrize("data", DATASETS)
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_cpu_overlay_shrinks_any_full_size_dataset(method: str, data: str) -> None:
    files = [CONFIGS / f"{method}.yaml", CONFIGS / "data" / f"{data}.yaml", CONFIGS / "cpu.yaml"]
    cfg = load_config(files)
    check_params(cfg.method.params, METHODS[method].Params(), "method.params.")
    assert (cfg.trainer.accelerator, cfg.backbone.name, cfg.data.image_size) == (
        "cpu", "resnet18", 32,
    )  # fmt: skip
    assert cfg.optim.lr == 0.3 and cfg.name == f"{method}-{data}-cpu"


def test_cpu_speed_settings_live_only_in_the_overlay() -> None:
    """Precision and speed keys of CPU runs are set in cpu.yaml and nowhere else."""
    for path in (CONFIGS / "data").glob("*-cpu.yaml"):
        trainer = yaml.safe_load(path.read_text()).get("trainer") or {}
        assert not {"precision", "accelerator", "devices"} & set(trainer), path.name
        assert yaml.safe_load(path.read_text())["defaults"] == "../cpu.yaml"


# ------------------------------------------------------------------------ HEX switch
@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_hex_switch_only_switches_hex_on(method: str, data: str) -> None:
    a = to_dict(compose(method, data, "hex.enabled=false"))
    b = to_dict(compose(method, data, "hex.enabled=true"))
    assert b.pop("name") == a.pop("name") + "-hex"
    assert a.pop("hex") | {"enabled": True} == (h := b.pop("hex"))
    assert a == b, "switching HEX on may change only the hex section and the run name"
    assert h["threshold"] == "adaptive" and h["variant"] == "paper"
    assert (h["q"], h["beta"], h["tau_plus"]) == (0.99, 1.0, 0.1)  # HEX_SPEC 4-5
    assert h["warmup_epochs"] == (1.0 if data.endswith("-cpu") else 10.0)
    if method in NON_CONTRASTIVE:
        assert (h["alpha"], h["temperature"]) == (0.1, 0.1)  # HEX_SPEC 6


# ------------------------------------------------------------------------ sizes
@pytest.mark.parametrize("data", [d for d in DATA if d.endswith("-cpu")])
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_cpu_presets_are_small(method: str, data: str) -> None:
    cfg = compose(method, data)
    assert (cfg.trainer.accelerator, cfg.data.num_workers) == ("cpu", 0)
    assert cfg.backbone.name == "resnet18"
    assert cfg.backbone.kwargs == {"stem": "cifar", "width": 16}
    assert cfg.data.image_size == 32 and 128 <= cfg.data.batch_size <= 256
    assert cfg.trainer.max_epochs <= 6 and cfg.optim.warmup_epochs <= 1
    if cfg.data.dataset in LAZY:
        assert cfg.trainer.limit_train_batches < 0.1 and not cfg.eval.knn_at_end
    elif cfg.data.dataset != "synthetic":
        assert cfg.data.options["max_train_samples"] <= 10000


@pytest.mark.parametrize("data", DATASETS)
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_full_size_presets_follow_the_reference_setup(method: str, data: str) -> None:
    cfg = compose(method, data)
    assert (cfg.trainer.accelerator, cfg.trainer.precision) == ("gpu", "16-mixed")
    assert cfg.data.batch_size == 256  # HEX_SPEC 7
    assert cfg.optim.name == ("sgd" if method == "moco_v2" else "lars")
    if cfg.data.dataset == "synthetic":
        return
    assert cfg.backbone.name == "resnet50"
    stem = "imagenet" if cfg.data.dataset in {"stl10", *LAZY} else "cifar"
    assert cfg.backbone.kwargs["stem"] == stem
    assert cfg.trainer.max_epochs == (100 if cfg.data.dataset in LAZY else 400)


# Recipes the dataset files give each method (solo-learn's values and queue sizes).
RECIPES = [
    ("all4one", "cifar10", {"queue_size": 32768}, 1.0, 1e-5),
    ("all4one", "cifar10-cpu", {"queue_size": 4096}, 0.3, 1e-4),
    ("all4one", "imagenet", {}, 1.0, 1e-5),
    ("nnclr", "imagenet100", {"queue_size": 65536}, 0.4, 1e-5),
    ("nnclr", "synthetic-cpu", {"queue_size": 2048}, 0.3, 1e-4),
    ("moco_v2", "tiny-imagenet-hier50", {"queue_size": 16384}, 0.3, 1e-4),
    ("moco_v2", "stl10", {}, 0.3, 1e-4),
    ("moco_v3", "cifar100", {}, 0.3, 1e-6),
    ("moco_v3", "stl10-cpu", {"proj_hidden": 1024, "pred_hidden": 1024}, 0.3, 1e-4),
    ("byol", "imagenet", {}, 0.5, 1e-6),
    ("byol", "synthetic", {}, 1.0, 1e-5),
    ("barlow", "cifar100", {"proj_hidden": 2048, "proj_out": 2048, "scale_loss": 0.1}, 0.3, 1e-4),
    ("barlow", "stl10", {"proj_hidden": 2048, "proj_out": 2048, "scale_loss": 0.1}, 0.3, 1e-4),
    ("barlow", "imagenet100", {}, 0.3, 1e-4),
    ("vicreg", "imagenet-cpu", {"proj_hidden": 1024, "proj_out": 1024}, 0.3, 1e-4),
    ("simclr", "cifar10", {}, 0.4, 1e-4),
]


@pytest.mark.parametrize(("method", "data", "params", "lr", "wd"), RECIPES)
def test_recipe_of_each_method_on_each_dataset(
    method: str, data: str, params: dict[str, float], lr: float, wd: float
) -> None:
    cfg = compose(method, data)
    assert cfg.method.params == params
    assert (cfg.optim.lr, cfg.optim.weight_decay) == (lr, wd)


def test_tiny_imagenet_presets_read_the_dataset_cache() -> None:
    for name, size in (("tiny-imagenet-hier50", 64), ("tiny-imagenet-hier50-cpu", 32)):
        cfg = compose("simclr", name)
        assert (cfg.data.dataset, cfg.data.root) == ("tiny-imagenet-hier50", None)
        assert cfg.data.options["image_size"] == size == cfg.data.image_size
        text = (CONFIGS / "data" / f"{name}.yaml").read_text()
        assert "hexssl data get tiny-imagenet-hier50" in text  # how to get it, in the preset


def test_tiny_imagenet_preset_reads_the_shared_archive_passed_explicitly() -> None:
    archive = ROOT.parent / "shared" / "data" / "tiny-imagenet-hier50.tar.gz"
    if not archive.is_file():
        pytest.skip(f"the study's archive is not at {archive} (../shared/data)")
    cfg = compose("simclr", "tiny-imagenet-hier50-cpu", f"data.root={archive}")
    options = {k: v for k, v in cfg.data.options.items() if k != "max_train_samples"}
    ds = build_dataset(cfg.data.dataset, cfg.data.root, "val", **options)  # the val split only
    assert (len(ds), ds.num_classes, ds.num_superclasses) == (2500, 50, 10)
    assert ds.image_size == (32, 32)


@pytest.mark.parametrize("data", DATA)
def test_no_dataset_preset_names_a_path_outside_the_package(data: str) -> None:
    root = compose("simclr", data).data.root
    assert root is None or (not Path(root).is_absolute() and ".." not in Path(root).parts)


# ------------------------------------------------------------------ composition rules
def test_later_files_win_and_defaults_may_be_a_list(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("optim: {lr: 1.0, weight_decay: 0.5}\n")
    (tmp_path / "b.yaml").write_text("optim: {lr: 2.0}\ntrainer: {max_epochs: 3}\n")
    (tmp_path / "c.yaml").write_text("defaults: [a.yaml, b.yaml]\ntrainer: {max_epochs: 4}\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.trainer.max_epochs) == (2.0, 0.5, 4)
    cfg = load_config([tmp_path / "c.yaml", tmp_path / "a.yaml"], ["trainer.max_epochs=7"])
    assert (cfg.optim.lr, cfg.trainer.max_epochs, cfg.name) == (1.0, 7, "c-a")


def test_by_method_applies_to_the_run_method_only_in_file_order(tmp_path: Path) -> None:
    data = "by_method:\n  byol: {optim: {lr: 1.0}}\n  nnclr: {method: {params: {queue_size: 8}}}\n"
    (tmp_path / "data.yaml").write_text("optim: {lr: 0.4}\n" + data)
    (tmp_path / "later.yaml").write_text("optim: {lr: 0.3}\n")
    byol = tmp_path / "byol.yaml"
    byol.write_text("method: {name: byol}\n")
    assert load_config([byol, tmp_path / "data.yaml"]).optim.lr == 1.0
    assert load_config([byol, tmp_path / "data.yaml", tmp_path / "later.yaml"]).optim.lr == 0.3
    assert load_config(tmp_path / "data.yaml").optim.lr == 0.4  # simclr: not listed
    nnclr = load_config(tmp_path / "data.yaml", ["method.name=nnclr"])  # an override counts
    assert nnclr.method.params == {"queue_size": 8}


def test_by_method_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("by_method:\n  bylo: {optim: {lr: 1.0}}\n")
    with pytest.raises(ConfigError, match=r"by_method\.bylo: unknown method.*'byol'"):
        load_config(bad)
    bad.write_text("by_method:\n  byol: {method: {name: simclr}}\n")
    with pytest.raises(ConfigError, match=r"leaves method\.name alone"):
        load_config(bad)
    bad.write_text("by_method: [byol]\n")
    with pytest.raises(ConfigError, match="must map method names"):
        load_config(bad)


def test_run_names() -> None:
    assert compose("nnclr", "imagenet100").name == "nnclr-imagenet100"
    cfg = load_config([CONFIGS / "simclr.yaml", CONFIGS / "data" / "cifar10.yaml"], ["name=mine"])
    assert cfg.name == "mine"
    assert load_config(None).name == "run"


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
    base = CONFIGS / "data" / "synthetic-cpu.yaml"
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
    cfg = compose(
        "simclr", "cifar100", "optim.lr=0.3", "hex.variant=reference", "trainer.devices=2"
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
        load_config(CONFIGS / "nope.yaml")


def test_missing_defaults_base(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*missing-base\.yaml"):
        load_config(write(tmp_path, "defaults: missing-base.yaml\n"))
