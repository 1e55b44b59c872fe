"""What one federated run is: the study's preset, seed and setting, where the server writes, and the
run's own settings, read from Flower's run config (``[tool.flwr.app.config]``, ``flwr run -c``).

=====================  =====================================================================
run-config key         meaning
=====================  =====================================================================
``preset``             preset name in ``configs/`` or a YAML path; server and sites load it and
                       must agree (its hash is checked when a site first answers)
``seed``               the study's seed (model initialisation, batches, augmentation)
``setting``            the setting whose institutions are the sites
``results-root``       where the server writes the run folder (empty: ``$DDVAL_RESULTS``)
``round-timeout``      seconds the server waits for every site's reply; past it the run fails
``wait-for-sites``     seconds the server waits for all the setting's sites to connect and answer
``dp-noise-scale``     Gaussian noise × feature std added on each site to the train features it
                       shares (0: none)
``simulation-sites``   Flower's simulation runtime only: the folder of the sites' data roots, one
                       per institution (virtual node ``i`` reads the ``i``-th institution's)
=====================  =====================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ddval.config import ExperimentConfig, load_config

DEFAULTS: dict[str, Any] = {
    "preset": "demo",
    "seed": 0,
    "setting": "noniid",
    "results-root": "",
    "round-timeout": 600.0,
    "wait-for-sites": 300.0,
    "dp-noise-scale": 0.0,
    "simulation-sites": "",
}


@dataclass(frozen=True)
class Job:
    """One federated run (see the module table)."""

    cfg: ExperimentConfig
    seed: int
    setting: str
    results_root: str | None
    round_timeout: float
    wait_for_sites: float
    dp_noise_scale: float
    simulation_sites: str | None = None

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> Job:
        """The job of a Flower run config; an unknown setting or a negative time is an error."""
        unknown = sorted(set(run_config) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"run config: unknown key(s) {unknown}; known: {sorted(DEFAULTS)}")
        conf = {**DEFAULTS, **dict(run_config)}
        cfg = load_config(str(conf["preset"]))
        cfg.setting(str(conf["setting"]))  # fails clearly on an unknown setting
        for key in ("round-timeout", "wait-for-sites", "dp-noise-scale"):
            if float(conf[key]) < 0:
                raise ValueError(f"run config: {key} must be >= 0, got {conf[key]!r}")
        return cls(
            cfg=cfg,
            seed=int(conf["seed"]),
            setting=str(conf["setting"]),
            results_root=str(conf["results-root"]) or None,
            round_timeout=float(conf["round-timeout"]),
            wait_for_sites=float(conf["wait-for-sites"]),
            dp_noise_scale=float(conf["dp-noise-scale"]),
            simulation_sites=str(conf["simulation-sites"]) or None,
        )

    @property
    def institutions(self) -> list[str]:
        """The setting's institutions, in config order (the order of every average)."""
        return [i.name for i in self.cfg.setting(self.setting).institutions]
