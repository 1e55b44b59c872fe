"""ddval.data: the chest X-ray data layer (stages 01 index and 02 resize, partitions, torch dataset).

The stages (what notebooks and the job runner call)::

    from ddval import data
    index = data.run_index_stage(cfg)      # -> <results>/<preset>/data/index.parquet
    resized = data.run_resize_stage(cfg)   # -> resized PNGs and index_resized.parquet
    data.read_index(cfg), data.read_resized_index(cfg)

Modules, in the order data flows through them:

* :mod:`ddval.data.synthetic` (+ :mod:`~ddval.data.sampling`, :mod:`~ddval.data.formats`,
  :mod:`~ddval.data.render`, :mod:`~ddval.data.anatomy`, :mod:`~ddval.data.findings`): the embedded synthetic cohort, written in the real NIH / CheXpert /
  MIMIC-CXR-JPG formats (``write_cohort``);
* :mod:`ddval.data.nih`, :mod:`ddval.data.chexpert`, :mod:`ddval.data.mimic`: one reader per dataset,
  its files, columns, codes, quirks and citation in its docstring (checks in :mod:`~ddval.data.sources`);
* :mod:`ddval.data.index`: the unified columns and label policy, ``index_nih``, ``index_chexpert``,
  ``index_mimic``, ``build_index``;
* :mod:`ddval.data.resize`: decoding and resizing scans;
* :mod:`ddval.data.stage`: ``run_index_stage``, ``run_resize_stage`` and the readers of their tables;
* :mod:`ddval.data.views`: what notebooks 01 and 02 display;
* :mod:`ddval.data.splits`: ``make_partition``, ``load_partition`` -> ``partition.parquet`` per seed and
  setting (patient-level, non-IID / IID / shared test, recorded label flips);
* :mod:`ddval.data.dataset`: ``XrayDataset``, ``build_transforms`` (what training reads; imports torch).

Importing ``ddval.data`` does not import torch or matplotlib.
"""

from ddval.data.stage import read_index, read_resized_index, run_index_stage, run_resize_stage

__all__ = ["read_index", "read_resized_index", "run_index_stage", "run_resize_stage"]
