"""The demo's comparison table formats present and missing metrics."""

from __future__ import annotations

from hexssl.demo import report, table


def test_table_rows_and_missing_values():
    rows = [
        {"name": "simclr", "val/online_acc1": 32.46, "knn_class_top1": 47.7, "seconds": 95.2},
        {
            "name": "simclr-hex",
            "val/online_acc1": 40.4,
            "train/hex/eps": 0.9691,
            "val/purity_class": 0.306,
            "val/purity_class_chance": 0.05,
            "seconds": 91.0,
        },
    ]
    text = table(rows).splitlines()
    assert len(text) == 4 and text[0].startswith("| run |")
    assert "| simclr | 32.5 | 47.7 |" in text[2] and "n/a" in text[2]
    assert "0.969" in text[3] and "0.306" in text[3] and "0.050" in text[3]


def test_caveat_is_printed_under_the_table():
    rows = [{"name": "simclr", "val/online_acc1": 30.0}, {"name": "simclr-hex"}]
    text = report(rows)
    assert text.startswith(table(rows))
    below = text[len(table(rows)) :]
    assert "One seed, synthetic data" in below and "not a benchmark" in below
    assert 'docs/results.md, section "Does HEX help?"' in below


def test_demo_preset_uses_the_hard_synthetic_hierarchy():
    """About 2 minutes a run on 2 cores; the superclass cue is weakened (no saturation)."""
    from hexssl.config import load_config
    from hexssl.demo import PRESET

    cfg = load_config(PRESET)
    assert cfg.data.dataset == "synthetic" and cfg.data.batch_size == 128
    assert cfg.data.options == {"hue_spread": 0.15, "texture_strength": 0.25}
    assert cfg.backbone.kwargs["width"] == 16 and 3 <= cfg.trainer.max_epochs <= 6
    assert cfg.eval.purity_every_n_steps == 20 and cfg.hex.warmup_epochs == 1
