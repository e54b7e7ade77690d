"""A relative of HEX picked from the command line trains end to end."""

from __future__ import annotations

import json

import yaml

from hexssl.cli import main

from .tiny import tiny


def test_pretrain_with_the_decoupled_denominator(tmp_path) -> None:
    args = tiny(tmp_path, "dcl", "loss.denominator=decoupled", "loss.sigma=0.5")
    assert main(["pretrain", "src/hexssl/configs/simclr-synthetic-demo.yaml", *args]) == 0
    saved = yaml.safe_load((tmp_path / "dcl" / "config.yaml").read_text())
    assert saved["loss"]["denominator"] == "decoupled" and saved["loss"]["sigma"] == 0.5
    assert not saved["hex"]["enabled"]
    summary = json.loads((tmp_path / "dcl" / "summary.json").read_text())
    assert summary["steps"] == 2
