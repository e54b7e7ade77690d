"""``hexssl knn/linear`` on other datasets (issue 10 item 8), on released weights, and the
feature cache keyed by checkpoint identity (issue 9 item 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hexssl.cli import main
from hexssl.config import load_config
from hexssl.export import export_release
from hexssl.run.eval_jobs import open_encoder
from hexssl.run.train import pretrain

from .tiny import tiny, write_tree

NINE_CLASSES = "data.options={n_per_class: 4, n_super: 3, n_per_super: 3, image_size: 16}"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SimCLR + HEX run on synthetic data: 4 classes in 2 superclasses."""
    tmp = tmp_path_factory.mktemp("runs")
    pretrain(load_config(None, tiny(tmp, "r", "method.name=simclr", "hex.enabled=true")))
    return tmp / "r"


def test_knn_and_linear_on_data_with_other_class_counts(run_dir: Path, tmp_path: Path) -> None:
    # synthetic with 9 classes / 3 superclasses, and an image folder with 3 / 2
    tree = write_tree(tmp_path / "tree", {"a": "x", "b": "x", "c": "y"})
    folder = ["data.dataset=imagefolder", f"data.root={tree}", "data.options={image_size: 16}"]
    assert main(["knn", str(run_dir)]) == 0
    own = (run_dir / "knn.json").read_text()
    for data, n_val in (([NINE_CLASSES], 9 * 4), (folder, 3 * 2)):
        enc = open_encoder(run_dir, data)
        assert len(enc.dm.val_set) == n_val
        assert enc.suffix.startswith("-synthetic-" if data == [NINE_CLASSES] else "-tree")
        assert main(["knn", str(run_dir), "--data", *data]) == 0
        knn = json.loads((run_dir / f"knn{enc.suffix}.json").read_text())
        assert {"knn_class_top1", "knn_super_top1"} <= set(knn)
        args = ["linear", str(run_dir), "--epochs", "2", "--fractions", "1.0", "--data", *data]
        assert main(args) == 0
        linear = json.loads((run_dir / f"linear{enc.suffix}.json").read_text())
        assert "linear_super_100pct_top1" in linear
    assert (run_dir / "knn.json").read_text() == own  # the run's own result is kept
    assert not (run_dir / "linear.json").exists()


def test_result_names_say_what_was_evaluated(run_dir: Path, tmp_path: Path) -> None:
    assert open_encoder(run_dir, []).suffix == ""
    assert open_encoder(run_dir, ["data.batch_size=8"]).suffix == ""  # same images
    other = tmp_path / "step2.ckpt"
    other.write_bytes((run_dir / "checkpoints" / "last.ckpt").read_bytes())
    assert open_encoder(run_dir, [], str(other)).suffix == "-step2"


def test_other_data_keeps_the_training_normalisation(run_dir: Path, tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "tree", {"a": "x", "b": "y"})
    own = open_encoder(run_dir, [])
    other = open_encoder(
        run_dir, ["data.dataset=imagefolder", f"data.root={tree}", "data.options={image_size: 16}"]
    )
    mean = dict(other.transform.named_buffers())
    ref = dict(own.transform.named_buffers())
    assert all(torch.equal(mean[k], ref[k]) for k in ref)  # the checkpoint's, not the tree's
    assert other.dm.num_classes == 2 and own.dm.num_classes == 4


def test_released_weights_evaluate_without_the_run_dir(run_dir: Path, tmp_path: Path) -> None:
    enc = open_encoder(run_dir, [])
    aug = dict(enc.transform.named_buffers())
    mean = next(v for k, v in aug.items() if k.endswith("mean")).flatten().tolist()
    std = next(v for k, v in aug.items() if k.endswith("std")).flatten().tolist()
    data = {"dataset": "synthetic", "image_size": 16, "options": {"n_per_class": 8, "n_super": 2,
            "n_per_super": 2, "image_size": 16}}  # fmt: skip
    b = enc.cfg.backbone
    w = export_release(enc.backbone, tmp_path / "w" / "r.safetensors", b.name, b.kwargs, 16,
                       mean, std, {"data": data})  # fmt: skip
    assert w.stat().st_size < 200_000  # fp16
    assert w.read_bytes()[8:9] == b"{"  # safetensors: a JSON header, then raw tensors
    assert main(["knn", str(w)]) == 0
    assert main(["knn", str(w), "--data", NINE_CLASSES]) == 0
    assert main(["linear", str(w), "--epochs", "2", "--fractions", "1.0"]) == 0
    assert not list(w.parent.glob("*knn*"))  # nothing written beside released weights
    # same features as the run (up to fp16 rounding of the weights)
    from hexssl.run.eval_jobs import encoder_features

    run_val = encoder_features(enc)[1][0]
    rel_val = encoder_features(open_encoder(w, []))[1][0]
    assert torch.allclose(run_val, rel_val, rtol=0.05, atol=0.05)
    (tmp_path / "w" / "bad.pt").write_bytes(b"x")
    assert main(["knn", str(tmp_path / "w" / "bad.pt")]) == 2  # no architecture JSON


def test_feature_cache_follows_the_checkpoint(run_dir: Path) -> None:
    assert main(["knn", str(run_dir)]) == 0
    cache = run_dir / "features" / "last-val.pt"
    before = torch.load(cache, weights_only=True)["feats"]
    # a resumed run rewrites last.ckpt at the same path: the cache must not be reused
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    saved = ckpt.read_bytes()
    state = torch.load(ckpt, weights_only=False)
    state["state_dict"]["backbone.conv1.weight"].mul_(-1.0)
    torch.save(state, ckpt)
    try:
        assert main(["knn", str(run_dir)]) == 0
        after = torch.load(cache, weights_only=True)["feats"]
        assert not torch.allclose(before, after)
        # truncated by a kill: rebuilt, no traceback
        cache.write_bytes(cache.read_bytes()[:100])
        assert main(["knn", str(run_dir)]) == 0
        assert torch.equal(torch.load(cache, weights_only=True)["feats"], after)
        assert not list((run_dir / "features").glob("*.tmp"))
    finally:
        ckpt.write_bytes(saved)


def test_load_backbone_of_a_run_matches_its_evaluation(run_dir: Path) -> None:
    import hexssl

    net, transform = hexssl.load_backbone(run_dir)
    enc = open_encoder(run_dir, [])
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(
            net(transform(images)), enc.backbone(enc.transform(images)), rtol=0, atol=0
        )
    assert not net.training
