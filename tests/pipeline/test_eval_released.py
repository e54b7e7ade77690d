"""Issue 25.4: released weights on the command line and in Python.

Bad files and arguments give one ``hexssl: error:`` line (exit 2) naming the fix; a run
says what it evaluates, writes ``--out``, takes a folder of weights in one call and
prints one table with each metric once; ``hexssl.load_backbone`` returns a ready model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import hexssl
from hexssl.backbones import build_backbone
from hexssl.cli import main
from hexssl.export import export_release
from hexssl.run.eval_jobs import encoder_features, open_encoder

from .tiny import write_tree

KWARGS = {"stem": "cifar", "width": 4}
OPTIONS = {"n_per_class": 8, "n_super": 2, "n_per_super": 2, "image_size": 16}
DATA = {"dataset": "synthetic", "image_size": 16, "options": OPTIONS}
NINE = "data.options={n_per_class: 4, n_super: 3, n_per_super: 3, image_size: 16}"


def release(folder: Path, name: str, seed: int = 0, data: dict | None = None) -> Path:
    torch.manual_seed(seed)
    net = build_backbone("resnet18", **KWARGS).eval()
    extra = {"data": data or DATA}
    return export_release(net, folder / f"{name}.safetensors", "resnet18", KWARGS, 16, [0.5] * 3,
                          [0.25] * 3, extra)  # fmt: skip


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    return release(tmp_path / "w", "a")


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("hexssl: error: "), err
    assert "Traceback" not in err[0] and "weights_only=False" not in err[0]
    return err[0]


def test_the_json_sidecar_names_the_weights_file(weights, capsys):
    assert main(["knn", str(weights.with_suffix(".json"))]) == 2
    assert f"pass the weights {weights}" in one_error(capsys)


def test_a_truncated_file_is_named_as_truncated(weights, capsys):
    weights.write_bytes(weights.read_bytes()[:2000])
    assert main(["knn", str(weights)]) == 2
    assert "is truncated or damaged" in one_error(capsys)


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch hexssl-evil-ran",))


def test_a_file_carrying_code_is_refused_and_says_why(weights, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    old = weights.with_suffix(".pt")  # a pickled release, as hexssl wrote them before
    torch.save({"conv1.weight": RunsCode()}, old)
    assert main(["knn", str(old)]) == 2
    line = one_error(capsys)
    assert "is refused" in line and "system" in line and "would run code" in line
    assert not (tmp_path / "hexssl-evil-ran").exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--data", "optim.lr=0.5"], "optim.lr is not a data setting"),
        (["--data", "root=X"], "write the full key, --data data.root=X"),
        (["--checkpoint", "previous"], "leave --checkpoint out"),
        (["--data", "data.root=missing.tar.gz", "data.dataset=imagefolder"],
         "data.root=missing.tar.gz: no such file or folder"),
        (["--data", "missing.tar.gz"], "write --data data.root=missing.tar.gz"),
        (["--data", "data.root=x.tar.gz"], "add --data data.dataset=imagefolder"),
    ],
)  # fmt: skip
def test_bad_arguments_are_one_line_with_the_fix(weights, capsys, args, says):
    assert main(["knn", str(weights), *args]) == 2
    line = one_error(capsys)
    assert says in line and "optim.lr=0.3" not in line


def test_missing_training_data_points_to_data_root(tmp_path, capsys):
    w = release(tmp_path, "w", data={"dataset": "imagefolder", "root": "../nowhere/x.tar.gz",
                                     "image_size": 16, "options": {"image_size": 16}})  # fmt: skip
    assert main(["knn", str(w)]) == 2
    line = one_error(capsys)
    assert "data.root=../nowhere/x.tar.gz: no such file or folder" in line
    assert "--data data.root=PATH" in line and "hexssl.data" not in line


def test_data_before_the_weights_and_a_folder_of_weights(tmp_path, capsys):
    folder = tmp_path / "w"
    for i, name in enumerate(("b-s0", "a-s0", "a-s1")):
        release(folder, name, seed=i)
    out = tmp_path / "res.json"
    assert main(["knn", "--data", NINE, str(folder), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    # one start line for the data, read once for all three
    assert stdout.count("[hexssl] data: synthetic, 36 train (memory bank) / 36 val") == 1
    table = stdout[stdout.index("kNN accuracy") :].splitlines()
    assert [row.split()[0] for row in table[3:6]] == ["a-s0", "a-s1", "b-s0"]
    assert "best" not in stdout and "k20_T0.07" not in stdout  # each metric once
    saved = json.loads(out.read_text())
    names = ["a-s0.safetensors", "a-s1.safetensors", "b-s0.safetensors"]
    assert sorted(Path(k).name for k in saved["results"]) == names
    assert all("knn_super_top1" in r for r in saved["results"].values())


def test_linear_prints_counts_as_integers_and_has_help(weights, capsys):
    assert main(["linear", str(weights), "--epochs", "2", "--fractions", "1.0", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "labelled train images: 100%: 32, 50%: 16" in out
    assert "_n:" not in out and "(pass --out FILE.json" in out
    with pytest.raises(SystemExit):
        main(["linear", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "fractions of the train labels" in text and "training epochs of each probe" in text


def test_the_decode_cache_is_configurable_and_announced(weights, tmp_path, capsys, monkeypatch):
    cache = tmp_path / "my-cache"
    monkeypatch.setenv("HEXSSL_CACHE", str(cache))
    tree = write_tree(tmp_path / "tree", {"a": "x", "b": "y"})
    data = ["data.dataset=imagefolder", f"data.root={tree}", "data.options={image_size: 16}"]
    assert main(["knn", str(weights), "--data", *data]) == 0
    out = capsys.readouterr().out
    written = list(cache.glob("*.pt"))
    assert len(written) == 2  # train and val
    assert f"[hexssl] cached the decoded images: {written[0]}" in out or str(written[1]) in out
    assert "resized to 16 px at load" in out and f"decode cache: {cache}" in out


def test_load_backbone_gives_the_model_and_its_transform(weights):
    net, transform = hexssl.load_backbone(weights)
    enc = open_encoder(weights, [])
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        feats = net(transform(images))
        ref = enc.backbone(enc.transform(images))
    assert feats.shape == (4, net.num_features)
    torch.testing.assert_close(feats, ref, rtol=0, atol=0)
    val = encoder_features(enc)[1][0]
    assert val.shape[1] == feats.shape[1]
