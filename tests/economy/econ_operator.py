"""A dishonest operator for the tests: the stage's own steps, up to a published allocation of its choice."""

from __future__ import annotations

from ddval import layout
from ddval.economy import inputs, stage, steps
from ddval.economy.published import AllocationDocument


def published_by(cfg, root, setting, doc_of, rpc_url=None, ipfs_api=None):
    """Run the operator's steps up to the attestations, publishing ``doc_of(honest document)``."""
    outdir = layout.economy_dir(cfg, 0, setting, root)
    run = stage.open_run(cfg, 0, setting, inputs.locate_inputs(cfg, 0, setting, root), outdir, rpc_url, ipfs_api)
    s = run.session
    contracts = steps.deploy(s)
    steps.record_training(s, contracts.registry, run.prepared.plan, run.prepared.features)
    honest = steps.allocation_document(s, contracts, run.leaves, run.prepared.grand_utility)
    return s, contracts, honest, steps.publish_allocation(s, doc_of(honest))


def shifted(doc: AllocationDocument) -> AllocationDocument:
    """One token moved from leaf 3 to leaf 0: the total, and every other leaf, unchanged."""
    leaves = list(doc.leaves)
    (a0, v0), (a3, v3) = leaves[0], leaves[3]
    leaves[0], leaves[3] = (a0, v0 + 10**18), (a3, v3 - 10**18)
    return AllocationDocument(**{**doc.__dict__, "leaves": tuple(leaves)})
