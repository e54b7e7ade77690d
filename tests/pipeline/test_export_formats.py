"""Issue 34.3: a run's backbone as safetensors and as a Hugging Face-style folder.

Exported and loaded again, a backbone gives the features of the run bit for bit; the
``hf`` folder holds ``config.json``, ``model.safetensors`` and a model card whose two
loading recipes run as written; ``knn`` and ``linear`` read both; old ``.pt`` releases
still load, with one note, and convert to safetensors with the same tensors.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import hexssl
from hexssl import export
from hexssl.cli import main
from hexssl.export import OLD_FORMATS, RELEASE_FORMAT, export_release, releases_in

from .tiny import tiny

KWARGS = {"stem": "cifar", "width": 4}
IMAGES = torch.randint(
    0, 256, (5, 3, 20, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SimCLR + HEX run, evaluated (knn.json, linear.json) as a user would."""
    tmp = tmp_path_factory.mktemp("runs")
    args = tiny(tmp, "r", "hex.enabled=true")
    assert main(["pretrain", "src/hexssl/configs/simclr-synthetic-demo.yaml", *args]) == 0
    assert main(["knn", str(tmp / "r")]) == 0
    assert main(["linear", str(tmp / "r"), "--epochs", "2"]) == 0
    return tmp / "r"


def features(path: Path, images: torch.Tensor = IMAGES) -> torch.Tensor:
    net, transform = hexssl.load_backbone(path)
    with torch.no_grad():
        out: torch.Tensor = net(transform(images))
    return out


def test_hf_folder_round_trips_with_identical_features(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "hf"
    assert main(["export", str(run_dir), "--format", "hf", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    torch.testing.assert_close(features(out), features(run_dir), rtol=0, atol=0)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["format"] == RELEASE_FORMAT and cfg["weights"] == "model.safetensors"
    assert cfg["backbone"] == {"name": "resnet18", "kwargs": {"stem": "cifar", "width": 4}}
    assert cfg["eval_transform"]["image_size"] == 16 and len(cfg["eval_transform"]["mean"]) == 3
    assert cfg["method"] == "simclr" and cfg["hex"]["variant"] == "paper"
    assert cfg["data"]["dataset"] == "synthetic" and cfg["epochs"] == 1 and cfg["steps"] == 2
    assert cfg["num_features"] == features(out).shape[1]
    state = load_file(out / "model.safetensors")
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())


def test_the_model_card_has_the_runs_results_and_its_recipes_run(
    run_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "card"
    assert main(["export", str(run_dir), "--format", "hf", "--out", str(out)]) == 0
    card = (out / "README.md").read_text()
    knn = json.loads((run_dir / "knn.json").read_text())
    lin = json.loads((run_dir / "linear.json").read_text())
    assert card.startswith("---\nlibrary_name: hexssl\n")
    assert "| method | simclr |" in card and "variant paper" in card and "beta 1.0" in card
    assert "| data | synthetic, 16 px |" in card and "1 epoch, 2 steps" in card
    assert f"class {knn['knn_class_top1']:.2f}" in card and "k20 T0.07" in card
    assert f"class | {lin['linear_class_100pct_top1']:.2f} | " in card
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    assert len(blocks) == 2
    for code in blocks:  # each recipe, as a reader would paste it (images at the run's size)
        scope: dict = {"images": torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)}
        exec(code.replace("THIS_FOLDER", str(out)), scope)
        ref = features(run_dir, scope["images"])
        torch.testing.assert_close(scope["feats"], ref, rtol=0, atol=1e-6)


def test_a_card_without_results_says_how_to_get_them(run_dir: Path, tmp_path: Path) -> None:
    out, other = tmp_path / "other", tmp_path / "other.ckpt"
    shutil.copy(run_dir / "checkpoints" / "last.ckpt", other)
    args = ["export", str(run_dir), "--format", "hf", "--checkpoint", str(other), "--out", str(out)]
    assert main(args) == 0  # knn.json is the last checkpoint's, not this one's
    assert "Not evaluated before export" in (out / "README.md").read_text()


def test_safetensors_export_sits_in_the_run_and_knn_reads_it(run_dir: Path, capsys) -> None:
    assert main(["export", str(run_dir)]) == 0  # safetensors: the default format
    path = run_dir / "backbone.safetensors"
    assert (
        f"wrote {path} and its architecture {run_dir / 'backbone.json'}" in capsys.readouterr().out
    )
    torch.testing.assert_close(features(path), features(run_dir), rtol=0, atol=0)
    meta = json.loads((run_dir / "backbone.json").read_text())
    assert meta["weights"] == "backbone.safetensors" and meta["source"]["checkpoint"] == "last"
    hf = run_dir / "backbone-hf"
    assert main(["export", str(run_dir), "--format", "hf"]) == 0  # default: beside the run
    res = run_dir.parent / "both.json"
    assert main(["knn", str(path), str(hf), "--out", str(res)]) == 0
    knn = list(json.loads(res.read_text())["results"].values())
    assert len(knn) == 2 and knn[0] == knn[1]  # the same weights, the same kNN
    assert main(["linear", str(hf), "--epochs", "2", "--fractions", "1.0"]) == 0


def test_a_release_converts_to_hf_and_keeps_its_fp16(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = hexssl.backbones.build_backbone("resnet18", stem="cifar", width=4).eval()
    w = export_release(net, tmp_path / "a.safetensors", "resnet18", KWARGS, 16, [0.5] * 3,
                       [0.25] * 3, {"arm": "simclr", "seed": 0})  # fmt: skip
    assert main(["export", str(w), "--format", "hf"]) == 0
    hf = tmp_path / "a-hf"
    a, b = load_file(w), load_file(hf / "model.safetensors")
    assert a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a
    )
    assert "| method | simclr |" in (hf / "README.md").read_text()
    torch.testing.assert_close(features(hf), features(w), rtol=0, atol=0)
    assert main(["export", str(w), "--format", "safetensors"]) == 2  # it already is


def old_pt_release(folder: Path, name: str) -> tuple[Path, dict[str, torch.Tensor]]:
    """A release as hexssl wrote them before safetensors: NAME.pt + NAME.json (fp16/1)."""
    torch.manual_seed(1)
    net = hexssl.backbones.build_backbone("resnet18", stem="cifar", width=4).eval()
    path = export_release(net, folder / f"{name}.safetensors", "resnet18", KWARGS, 16,
                          [0.5] * 3, [0.25] * 3)  # fmt: skip
    state = load_file(path)
    path.unlink()
    meta = json.loads(path.with_suffix(".json").read_text())
    meta.update(format=OLD_FORMATS[0], weights=f"{name}.pt")
    path.with_suffix(".json").write_text(json.dumps(meta))
    torch.save(state, folder / f"{name}.pt")
    return folder / f"{name}.pt", state


def test_an_old_pt_release_loads_with_one_note_and_converts(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "_noted_pickle", False)
    old, state = old_pt_release(tmp_path, "old")
    before = features(old)
    features(old)  # a second load: no second note
    notes = [ln for ln in capsys.readouterr().err.splitlines() if "note:" in ln]
    assert len(notes) == 1 and f"hexssl export {old} --format safetensors" in notes[0]
    assert main(["export", str(old), "--format", "safetensors"]) == 0
    out = capsys.readouterr()
    assert "note:" not in out.err and f"{old} can be deleted" in out.out
    new = load_file(tmp_path / "old.safetensors")
    assert new.keys() == state.keys() and all(
        torch.equal(new[k], state[k]) and new[k].dtype == state[k].dtype for k in state
    )
    meta = json.loads((tmp_path / "old.json").read_text())
    assert meta["format"] == RELEASE_FORMAT and meta["weights"] == "old.safetensors"
    torch.testing.assert_close(features(tmp_path / "old.safetensors"), before, rtol=0, atol=0)
    assert releases_in(tmp_path) == [tmp_path / "old.safetensors"]  # not both copies
