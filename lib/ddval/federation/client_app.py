"""The ClientApp: what one institution's SuperNode runs for each message of the ServerApp.

The site reads only its own data root (the SuperNode's ``data-root`` node config, :mod:`ddval.
federation.sites`) and the run config (``preset``, ``seed``, ``setting``). Every reply is computed with
the in-process pipeline's own functions: :func:`ddval.train.local.local_train` and
:func:`~ddval.train.local.validation_loss` (seeded per client, round and epoch, so the local model of
round ``r`` is bit-identical to the in-process one), :func:`ddval.train.metrics.evaluate` on its test
set, and :func:`ddval.valuation.features.split_features` for the feature file, with the DP noise of
``dp-noise-scale`` added here, on the site, before anything leaves it.

Flower starts a fresh process for every message, so nothing is cached between rounds: each message
reads the site's scans again (small for the demo; a large site keeps them resized on a local disk).
"""

from __future__ import annotations

import ddval.federation  # noqa: F401  (telemetry off before flwr is imported)

import json
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from ddval.federation import protocol
from ddval.federation.job import Job
from ddval.federation.sites import Site, load_site

app = ClientApp()


def open_site(context: Context) -> tuple[Job, Site]:
    """The run's job and this node's site; a site partitioned for another preset, seed or setting
    is refused (its rows would not be the study's)."""
    job = Job.from_run_config(context.run_config)
    site = load_site(data_root(job, context.node_config))
    wanted = (job.cfg.preset, job.seed, job.setting)
    if (site.preset, site.seed, site.setting) != wanted:
        raise ValueError(
            f"{site.root}: partitioned for preset {site.preset!r}, seed {site.seed}, setting {site.setting!r}; "
            f"the run is for preset {wanted[0]!r}, seed {wanted[1]}, setting {wanted[2]!r}"
        )
    return job, site


def data_root(job: Job, node_config) -> str:
    """The SuperNode's ``data-root``; under Flower's simulation runtime (virtual nodes numbered by
    ``partition-id``) the data root of the ``partition-id``-th institution in ``simulation-sites``."""
    if "data-root" in node_config:
        return str(node_config["data-root"])
    if "partition-id" in node_config and job.simulation_sites:
        return str(Path(job.simulation_sites) / job.institutions[int(node_config["partition-id"])])
    raise ValueError("this SuperNode has no data-root: start it with --node-config \"data-root='<folder>'\"")


def _model(job: Job, message: Message):
    """The model of ``job`` holding the state the message carries, on the configured device."""
    from ddval.train.local import resolve_device
    from ddval.train.models import build_model

    model = build_model(job.cfg.train).to(resolve_device(job.cfg.train))
    model.load_state_dict(protocol.arrays_to_state(message.content[protocol.ARRAYS]))
    return model


def _reply(message: Message, **records) -> Message:
    return Message(RecordDict(records), reply_to=message)


@app.query("describe")
def describe(message: Message, context: Context) -> Message:
    """Who this site is and how much data it holds; refuses a run under another config."""
    job, site = open_site(context)
    sent = str(message.content[protocol.JOB]["config-sha256"])
    if sent != protocol.config_sha256(job.cfg):
        raise ValueError(
            f"site {site.institution!r}: the server's config differs from this site's preset {job.cfg.preset!r}"
        )
    from ddval import numerics

    sizes = {f"n_{split}": int(len(site.split(split))) for split in ("train", "val", "test")}
    numerics.apply_to_torch()
    info = ConfigRecord(
        {
            "institution": site.institution,
            "digest": site.digest(),
            **sizes,
            "numerics": json.dumps(numerics.fingerprint(), sort_keys=True),
        }
    )
    return _reply(message, **{protocol.SITE: info})


@app.train()
def train(message: Message, context: Context) -> Message:
    """Local training of one round from the global model the message carries."""
    from ddval.repro import seed_everything
    from ddval.train.local import Client, local_train, resolve_device
    from ddval.train.models import build_model

    job, site = open_site(context)
    seed_everything(job.seed, threads=job.cfg.train.threads)
    data = site.datasets(job.cfg)
    model = build_model(job.cfg.train).to(resolve_device(job.cfg.train))
    round_no = int(message.content[protocol.CONFIG]["round"])
    state, loss = local_train(
        model,
        protocol.arrays_to_state(message.content[protocol.ARRAYS]),
        Client(site.institution, data["train"], data["val"]),
        job.cfg.train,
        seed=job.seed,
        round_no=round_no,
    )
    metrics = MetricRecord({"train_loss": float(loss), "num-examples": len(data["train"])})
    return _reply(message, **{protocol.ARRAYS: protocol.state_to_arrays(state), protocol.METRICS: metrics})


@app.evaluate()
def validate(message: Message, context: Context) -> Message:
    """Validation loss (mean BCE) of the merged model on this site's validation set."""
    from ddval.repro import seed_everything
    from ddval.train.local import validation_loss

    job, site = open_site(context)
    seed_everything(job.seed, threads=job.cfg.train.threads)
    data = site.datasets(job.cfg)
    model = _model(job, message)
    loss = validation_loss(
        model, protocol.arrays_to_state(message.content[protocol.ARRAYS]), data["val"], job.cfg.train
    )
    return _reply(
        message, **{protocol.METRICS: MetricRecord({"val_loss": float(loss), "num-examples": len(data["val"])})}
    )


@app.evaluate("test")
def test(message: Message, context: Context) -> Message:
    """AUROC per label and their mean on this site's test set (one row of the coalition utility)."""
    from ddval.repro import seed_everything
    from ddval.train.local import resolve_device
    from ddval.train.metrics import evaluate

    job, site = open_site(context)
    seed_everything(job.seed, threads=job.cfg.train.threads)
    data = site.datasets(job.cfg)
    row = evaluate(
        _model(job, message),
        data["test"],
        batch_size=job.cfg.train.eval_batch_size,
        device=resolve_device(job.cfg.train),
    )
    metrics = MetricRecord({**{label: float(v) for label, v in row.items()}, "num-examples": len(data["test"])})
    return _reply(message, **{protocol.METRICS: metrics})


@app.query("features")
def features(message: Message, context: Context) -> Message:
    """This site's feature file (ddval's format), DP noise added here when the run asks for it; a
    copy stays in ``<data-root>/shared/`` so the site can audit what it sent."""
    import torch

    from ddval import store
    from ddval.valuation.features import InstitutionFeatures, split_features, stage_threads, write_features

    from ddval import numerics

    job, site = open_site(context)
    numerics.apply_to_torch()
    torch.set_num_threads(stage_threads(job.cfg))
    model = _model(job, message).eval()
    v = job.cfg.valuation
    splits = {
        split: split_features(
            model,
            site.split(split),
            job.cfg.data.image_size,
            pooling=v.pooling,
            dtype=v.feature_dtype,
            batch_size=job.cfg.train.eval_batch_size,
            desc=f"{site.institution} {split}",
        )
        for split in ("train", "test")
    }
    feats = _with_noise(job, site, InstitutionFeatures(site.institution, splits["train"], splits["test"]))
    path = write_features(site.root / "shared" / f"{site.institution}.npz", feats)
    store.write_json(
        path.with_suffix(".json"), {"dp_noise_scale": job.dp_noise_scale, "sha256": store.file_sha256(path)}
    )
    blob = protocol.bytes_to_array(path.read_bytes())
    return _reply(message, **{protocol.FEATURE_FILE: ArrayRecord(numpy_ndarrays=[blob])})


def _with_noise(job: Job, site: Site, feats):
    """``feats`` with Gaussian noise on the train features when ``dp-noise-scale > 0`` (the DP
    experiment's mechanism and noise stream, :mod:`ddval.valuation.experiments`)."""
    from dataclasses import replace

    from ddval.valuation.experiments import add_feature_noise, noise_rng

    if job.dp_noise_scale == 0:
        return feats
    number = [i.name for i in job.cfg.setting(job.setting).institutions].index(site.institution)
    x = add_feature_noise(feats.train.x, job.dp_noise_scale, noise_rng(job.seed, number, 0))
    return replace(feats, train=replace(feats.train, x=x))


__all__ = ["app", "open_site"]
