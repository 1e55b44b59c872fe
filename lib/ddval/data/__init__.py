"""ddval.data: the chest X-ray data layer (stages 01 index and 02 resize, partitions, torch dataset).

Modules, in the order data flows through them:

* :mod:`ddval.data.synthetic` (+ :mod:`ddval.data.render`): the embedded synthetic cohort, written in
  the real NIH / CheXpert / MIMIC-CXR-JPG formats (``write_cohort``);
* :mod:`ddval.data.index`: ``index_nih``, ``index_chexpert``, ``index_mimic``, ``build_index``,
  ``run_index_stage`` -> ``index.parquet``;
* :mod:`ddval.data.resize`: ``run_resize_stage`` -> resized PNGs and ``index_resized.parquet``;
* :mod:`ddval.data.splits`: ``make_partition``, ``load_partition`` -> ``partition.parquet`` per seed and
  setting (patient-level, non-IID / IID / shared test, recorded label flips);
* :mod:`ddval.data.dataset`: ``XrayDataset``, ``build_transforms`` (what training reads).

Submodules are imported on use (``from ddval.data import index``) so that importing one does not pull
in torch or matplotlib.
"""
