"""Evaluation of frozen representations: kNN, linear probes, hierarchy, plots, reports.

Typical use on a trained backbone::

    from hexssl.eval import cached_features, knn_eval, linear_eval, hierarchy_report

    tr = cached_features(run_dir, "train", backbone, train_loader, eval_aug, "cuda")
    te = cached_features(run_dir, "test", backbone, test_loader, eval_aug, "cuda")
    knn = knn_eval(tr[0], tr[1], te[0], te[1])                 # class level
    knn_super = knn_eval(tr[0], tr[2], te[0], te[2])           # superclass level
    probe = linear_eval(tr[0], tr[1], te[0], te[1])
    hier = hierarchy_report(te[0], labels=te[1], superlabels=te[2])
"""

from hexssl.eval.features import (
    cached_features,
    extract_features,
    feature_cache_path,
    load_features,
    save_features,
)
from hexssl.eval.hierarchy import (
    effective_rank,
    hierarchy_report,
    neighbour_purity,
    neighbour_sets,
    per_group_effective_rank,
)
from hexssl.eval.knn import knn_eval
from hexssl.eval.linear import balanced_subset, linear_eval, train_linear
from hexssl.eval.metrics import topk_accuracy
from hexssl.eval.plots import plot_bars, plot_curves, plot_embedding_2d
from hexssl.eval.report import compare_runs, read_metrics, read_summary

__all__ = [
    "balanced_subset",
    "cached_features",
    "compare_runs",
    "effective_rank",
    "extract_features",
    "feature_cache_path",
    "hierarchy_report",
    "knn_eval",
    "linear_eval",
    "load_features",
    "neighbour_purity",
    "neighbour_sets",
    "per_group_effective_rank",
    "plot_bars",
    "plot_curves",
    "plot_embedding_2d",
    "read_metrics",
    "read_summary",
    "save_features",
    "topk_accuracy",
    "train_linear",
]
