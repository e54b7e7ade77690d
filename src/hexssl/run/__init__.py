"""The run machinery: everything between a config and a finished run directory.

* ``build``: the datamodule and the method from a config (registry names resolved once);
* ``train``: ``pretrain`` / ``resume`` (the Lightning Trainer, callbacks, summary);
* ``checkpoints``, ``history``, ``atomic``: step checkpoints, metrics.csv, atomic writes;
* ``runs``: re-open a run directory (its config, checkpoint and method);
* ``eval_jobs``: the CLI's evaluation jobs (``hexssl knn | linear | umap``) on a run or
  released weights, with a feature cache;
* ``speed``, ``hostsync``, ``machine``, ``console``: memory layout and compilation,
  host-sync avoidance on accelerators, what the machine can do, quiet console output.

This ``__init__`` imports nothing, so that the losses can use ``hexssl.run.hostsync``
without loading the trainer. Import from the modules, e.g.
``from hexssl.run.train import pretrain``.
"""
