"""Experiment grids: many ordinary training runs, one table, the paper's analyses.

``liquidgen experiment CONFIG.yaml`` (:mod:`.cli`) runs a grid of model sizes x data
mixtures x seeds x compute budgets, each an ordinary ``liquidgen train`` run in its own
folder, all reading one tokenized dataset prepared by a recipe (``data_from``):

- :mod:`.grid` — the experiment YAML (:class:`~.grid.Experiment`) and the runs it names;
- :mod:`.runner` — data preparation, one model per size and seed, training (in process or
  through ``torchrun``), optional evaluation, done markers, ``results.csv`` / ``results.json``;
- :mod:`.fit` — the power law ``L(C) = a * C^-b + c``, the compute frontier, steps to a loss;
- :mod:`.plots` — the PNG figures;
- :mod:`.report` — ``--report``: the analyses an experiment asks for, as JSON, Markdown, PNG.

docs/science.md describes the four grids of ``configs/experiments/``.
"""
