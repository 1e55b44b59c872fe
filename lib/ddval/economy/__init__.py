"""ddval.economy: the token economy of notebook 05.

- :mod:`~ddval.economy.contracts`: the pinned Solidity build (npm solc 0.8.37, OpenZeppelin 5.7.0)
  and the committed artifacts: ``DDValToken``, ``SwarmRegistry``, ``RewardPool``.
- :mod:`~ddval.economy.chain`: the embedded chain (eth-tester) or any JSON-RPC endpoint; keys only
  from the environment; clear errors before anything is sent.
- :mod:`~ddval.economy.ipfs`: Kubo-compatible CIDs, the embedded content-addressed store, and a
  Kubo RPC client (``ipfshttpclient``) that checks every CID it is given.
- :mod:`~ddval.economy.rewards`: data-point and institution values -> integer token amounts.
- :mod:`~ddval.economy.merkle`: OpenZeppelin-compatible Merkle trees of ``(account, amount)``.
- :mod:`~ddval.economy.stage`: the stage (:func:`run_economy_stage`, :func:`run_payout_scaling_stage`);
  :mod:`~ddval.economy.inputs` (what it reads, checked first), :mod:`~ddval.economy.parties` (who
  signs), :mod:`~ddval.economy.gas` (the gas log), :mod:`~ddval.economy.published` (the pinned table);
  :mod:`~ddval.economy.views`: what notebook 05 displays.
- :mod:`~ddval.economy.scaling`: payout cost, transfer loop vs Merkle claims, measured.
"""

from ddval.economy.stage import EconomyResult, run_economy_stage, run_payout_scaling_stage

__all__ = ["EconomyResult", "run_economy_stage", "run_payout_scaling_stage"]
