"""HEX state and statistics per optimiser step, per HEX term (issue 10, items 2 and 5)."""

from __future__ import annotations

import pytest
import torch

from hexssl.losses.infonce import InfoNCE

from .helpers import build, first_batch, tiny_config


def record_calls(method) -> list[dict]:  # type: ignore[no-untyped-def]
    """Wrap every InfoNCE's statistics recorder to keep each call's statistics."""
    calls: list[dict] = []
    for module in method.modules():
        if isinstance(module, InfoNCE):
            original = module._record

            def spy(stats, original=original):  # type: ignore[no-untyped-def]
                if stats:
                    calls.append({k: float(v) for k, v in stats.items()})
                original(stats)

            module._record = spy  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("name,n_calls", [("moco_v2", 2), ("nnclr", 2), ("all4one", 4)])
def test_logged_statistics_are_the_mean_over_every_hex_call(name: str, n_calls: int) -> None:
    torch.manual_seed(0)
    method, dm = build(tiny_config(name, "hex.enabled=true", "hex.q=0.8"))
    images, _, _, _ = first_batch(dm)
    calls = record_calls(method)
    method.ssl_step(method.augmented_views(images))
    logged = method.hex_stats()
    assert len(calls) == n_calls
    for key in ("eps", "neighbours", "neighbour_frac", "local_share"):
        want = sum(c[key] for c in calls) / n_calls
        assert float(logged[key]) == pytest.approx(want, rel=1e-5)
    assert method.hex_stats() == {}  # read once per step


def test_multicrop_logs_the_mean_over_all_crop_pairs() -> None:
    torch.manual_seed(0)
    cfg = tiny_config("simclr", "hex.enabled=true", "data.augment=multicrop")
    method, dm = build(cfg)
    images, _, _, _ = first_batch(dm)
    calls = record_calls(method)
    views = method.augmented_views(images)
    method.ssl_step(views)
    assert len(calls) == 1 + 2 * (len(views) - 2)
    want = sum(c["eps"] for c in calls) / len(calls)
    assert float(method.hex_stats()["eps"]) == pytest.approx(want, rel=1e-5)


def test_all4one_terms_have_their_own_threshold_state() -> None:
    method, _ = build(tiny_config("all4one", "hex.enabled=true", "hex.ema=0.9"))
    a, b = method.nnclr_loss.denominator, method.centroid_loss.denominator
    assert a is not b and a.threshold is not b.threshold
    assert set(method.state_dict()) >= {
        "nnclr_loss.denominator.threshold.ema_value",
        "centroid_loss.denominator.threshold.ema_value",
    }


def test_ema_advances_once_per_step_for_moco() -> None:
    """MoCo calls the loss twice; the EMA takes the mean of both once, at step end."""
    torch.manual_seed(0)
    method, dm = build(tiny_config("moco_v2", "hex.enabled=true", "hex.ema=0.5"))
    images, _, _, _ = first_batch(dm)
    calls = record_calls(method)
    thr = method.loss_fn.denominator.threshold
    method.ssl_step(method.augmented_views(images))
    assert torch.isnan(thr.ema_value)  # nothing committed inside the step
    for module in method.modules():
        if isinstance(module, InfoNCE):
            module.end_step()
    assert float(thr.ema_value) == pytest.approx((calls[0]["eps"] + calls[1]["eps"]) / 2)


def test_the_oracle_gets_its_labels_by_the_hook_not_through_the_step() -> None:
    """Labels reach the superclass oracle as progress does (push_labels), never ssl_step."""
    torch.manual_seed(0)
    method, dm = build(tiny_config("simclr", "hex.enabled=true", "hex.threshold=superclass_oracle"))
    images, _, sup, _ = first_batch(dm)
    method.eval()  # BN on running statistics: the same views give the same loss
    views = method.augmented_views(images)
    with torch.no_grad(), pytest.raises(RuntimeError, match="needs labels"):
        method.ssl_step(views)
    method.push_labels(sup)
    with torch.no_grad():
        hooked = method.ssl_step(views).loss
        two = torch.cat([sup, sup])  # SimCLR: anchors and candidates are [view 0; view 1]
        method.loss_fn.denominator.threshold.set_labels(two, two)
        explicit = method.ssl_step(views).loss
    torch.testing.assert_close(hooked, explicit)
    plain, _ = build(tiny_config("simclr", "hex.enabled=true"))
    plain.push_labels(sup)
    assert plain._label_setters == []  # without the oracle, no module receives labels


def test_the_oracle_refuses_a_queue() -> None:
    torch.manual_seed(0)
    method, dm = build(
        tiny_config("moco_v2", "hex.enabled=true", "hex.threshold=superclass_oracle")
    )
    images, _, sup, _ = first_batch(dm)
    method.push_labels(sup)
    with torch.no_grad(), pytest.raises(ValueError, match="no queue of negatives"):
        method.ssl_step(method.augmented_views(images))
