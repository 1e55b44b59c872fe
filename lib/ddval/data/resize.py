"""Re-store every indexed scan at ``data.image_size`` x ``data.image_size`` (stage 02).

Each image is decoded in full (so a truncated or corrupt file fails here, not in training),
converted to 8-bit grayscale from its real bit depth (:mod:`ddval.data.images`), squashed to a
square with bilinear, anti-aliased resampling (the paper's ``Resize((s, s))``, aspect ratio not
kept) and written as PNG to::

    <results>/<preset>/data/resized/<size>/<dataset>/<path below the dataset's image root>.png

The stage that runs this over the whole index is :func:`ddval.data.stage.run_resize_stage`.
Work runs in a process pool (``data.workers``; 1 = in this process) with a progress bar. Every
file is written atomically (temporary name, then rename), and a file that already exists is not
redone, so a killed run resumes where it stopped. ``index_resized.parquet`` is the index with
``path`` re-pointed at the resized files. The stage's completion record vouches for every resized
file (size and SHA-256): one damaged later makes the stage stale and is written again.

A corrupt, truncated or unreadable image is never replaced by another one. With
``data.on_corrupt: error`` (default) the stage stops with an error naming the file; with
``quarantine`` the scan is left out of ``index_resized.parquet`` and listed, with the decoder's
message, in ``resize_quarantine.csv``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ddval import store
from ddval.data.images import CorruptImageError, read_grayscale
from ddval.data.sources import existing
from ddval.procs import die_with_parent
from ddval.progress import progress

log = logging.getLogger(__name__)

#: Scans per task sent to a worker process.
CHUNK = 64


def resize_file(src: str | os.PathLike, dst: str | os.PathLike, size: int) -> None:
    """Resize one image to ``size x size`` and write it atomically to ``dst`` (PNG)."""
    img = read_grayscale(src).resize((size, size), Image.Resampling.BILINEAR)
    with store.atomic_path(dst) as tmp:
        img.save(tmp, format="PNG")


def _resize_chunk(items: list[tuple[int, str, str]], size: int) -> list[tuple[int, str | None]]:
    """Worker: resize each ``(row, src, dst)``; return ``(row, error message or None)``."""
    out = []
    for row, src, dst in items:
        try:
            resize_file(src, dst, size)
            out.append((row, None))
        except CorruptImageError as exc:
            out.append((row, str(exc)))
    return out


def resized_paths(index: pd.DataFrame, out_dir: str | os.PathLike) -> pd.Series:
    """Destination of every scan: ``out_dir/<dataset>/<path below the dataset's common folder>.png``."""
    out_dir = Path(out_dir)
    result = pd.Series(index=index.index, dtype=object)
    for dataset, paths in index.groupby("dataset", sort=False)["path"]:
        common = os.path.commonpath(list(pd.unique(paths.str.rpartition("/")[0])))
        rel = paths.str.slice(len(common) + 1).str.replace(r"\.[^./]+$", "", regex=True)
        result.loc[paths.index] = str(out_dir / dataset) + "/" + rel + ".png"
    return result


def resize_index(
    index: pd.DataFrame, out_dir: str | os.PathLike, size: int, *, workers: int = 1, on_corrupt: str = "error"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Resize every scan of ``index`` into ``out_dir``; return (re-pointed index, quarantine table).

    Existing destination files are kept (resume). ``on_corrupt="error"`` raises
    :class:`CorruptImageError` at the first bad image; ``"quarantine"`` lists bad images
    (``dataset, scan_id, path, error``) and leaves them out of the returned index.
    """
    dst = resized_paths(index, out_dir)
    exists = existing(dst)
    todo = [(i, src, d) for i, (src, d, done) in enumerate(zip(index["path"], dst, exists)) if not done]
    log.info("resize: %d of %d scans to do (%d already resized)", len(todo), len(index), len(index) - len(todo))
    errors: dict[int, str] = {}
    chunks = [todo[k : k + CHUNK] for k in range(0, len(todo), CHUNK)]
    bar = progress(total=len(todo), desc=f"resize to {size}px", unit="scan")
    with contextlib.closing(_run(chunks, size, workers)) as batches, contextlib.closing(bar):
        for results in batches:
            for row, err in results:
                if err is not None:
                    if on_corrupt == "error":
                        raise CorruptImageError(
                            f"{err} (scan {index['scan_id'].iloc[row]}; set data.on_corrupt: quarantine to leave "
                            "corrupt scans out and list them in resize_quarantine.csv)"
                        )
                    errors[row] = err
            bar.update(len(results))
    bad = np.zeros(len(index), dtype=bool)
    bad[list(errors)] = True
    quarantine = pd.DataFrame(
        {
            "dataset": index["dataset"].to_numpy()[bad],
            "scan_id": index["scan_id"].to_numpy()[bad],
            "path": index["path"].to_numpy()[bad],
            "error": [errors[i] for i in sorted(errors)],
        }
    )
    if len(quarantine):
        log.warning("resize: %d corrupt image(s) quarantined, e.g. %s", len(quarantine), quarantine["error"].iloc[0])
    out = index.assign(path=dst.to_numpy()).loc[~bad].reset_index(drop=True)
    return out, quarantine


def _run(chunks, size, workers):
    """Yield the results of every chunk, in a process pool when ``workers > 1``."""
    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            yield _resize_chunk(chunk, size)
        return
    # fork where available: workers need only PIL/numpy, and unlike spawn it works from scripts
    # without a ``if __name__ == "__main__"`` guard (spawn re-imports the main module).
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),)
    ) as pool:  # no worker outlives a killed runner
        pending = {pool.submit(_resize_chunk, chunk, size) for chunk in chunks}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    yield fut.result()
        finally:
            for fut in pending:
                fut.cancel()
