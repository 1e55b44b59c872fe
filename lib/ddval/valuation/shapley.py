"""Exact Shapley values of a cooperative game given as a table of coalition utilities.

Used for the ground truth of DDVal: the utilities come from retraining the model on every coalition
of institutions (training stage), the empty coalition included (the paper: AUROC 0.5).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TypeVar

import numpy as np

__all__ = ["exact_shapley"]

P = TypeVar("P", bound=Hashable)

#: Above this many players the 2^n table is impractical (and usually a mistake).
MAX_PLAYERS = 24


def exact_shapley(
    utility: Mapping[frozenset, float] | Callable[[frozenset], float], players: Iterable[P]
) -> dict[P, float]:
    """Shapley values phi_i = sum_{S not containing i} |S|! (n-|S|-1)! / n! * (v(S + i) - v(S)).

    Args:
        utility: ``frozenset`` of players -> worth, for **every** coalition including the empty one (a
            mapping), or a callable evaluated once per coalition.
        players: The players (hashable, unique), in the order of the returned dict.

    Returns:
        Each player's Shapley value (an exact ``math.fsum`` over its marginal gains).

    Raises:
        ValueError: Duplicate players, coalitions holding unknown players, missing coalitions (named), or
            worths that are not finite numbers.
    """
    players = list(players)
    n = len(players)
    if len(set(players)) != n:
        raise ValueError(f"players must be unique, got {players}")
    if n > MAX_PLAYERS:
        raise ValueError(f"exact Shapley values of {n} players need 2^{n} coalitions; at most {MAX_PLAYERS} supported")
    worth = _worth_table(utility, players)
    masks = np.arange(1 << n)
    sizes = np.array([bin(m).count("1") for m in range(1 << n)])
    # weight of a coalition S (not containing i) of size s: s! (n - s - 1)! / n! = 1 / (n C(n-1, s))
    weight_by_size = np.array([1.0 / (n * math.comb(n - 1, s)) for s in range(n)]) if n else np.array([])
    values: dict[P, float] = {}
    for i, player in enumerate(players):
        bit = 1 << i
        without = masks[(masks & bit) == 0]
        gains = worth[without | bit] - worth[without]
        values[player] = math.fsum((weight_by_size[sizes[without]] * gains).tolist())
    return values


def _worth_table(utility, players: list) -> np.ndarray:
    """Worth of every coalition indexed by bitmask (bit i <-> players[i])."""
    n = len(players)
    position = {p: i for i, p in enumerate(players)}
    table = np.full(1 << n, np.nan)
    if callable(utility) and not isinstance(utility, Mapping):
        for mask in range(1 << n):
            coalition = frozenset(players[i] for i in range(n) if mask >> i & 1)
            table[mask] = _check_worth(utility(coalition), coalition)
        return table
    if not isinstance(utility, Mapping):
        raise ValueError(f"utility must be a mapping frozenset -> worth or a callable, got {type(utility).__name__}")
    for coalition, value in utility.items():
        if not isinstance(coalition, (frozenset, set)):
            raise ValueError(f"utility keys must be frozensets of players, got {coalition!r}")
        unknown = [p for p in coalition if p not in position]
        if unknown:
            raise ValueError(f"coalition {_name(coalition)} holds players that are not in players: {unknown}")
        mask = sum(1 << position[p] for p in coalition)
        table[mask] = _check_worth(value, coalition)
    missing = np.flatnonzero(np.isnan(table))
    if missing.size:
        names = [_name(frozenset(players[i] for i in range(n) if m >> i & 1)) for m in missing[:10]]
        more = f" and {missing.size - 10} more" if missing.size > 10 else ""
        raise ValueError(f"utility lacks {missing.size} of the {1 << n} coalitions: {', '.join(names)}{more}")
    return table


def _check_worth(value, coalition) -> float:
    # a real number only: float("1") would silently accept the string "1", float(True) a flag
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise ValueError(f"worth of coalition {_name(coalition)} is not a number: {value!r} ({type(value).__name__})")
    worth = float(value)
    if not math.isfinite(worth):
        raise ValueError(f"worth of coalition {_name(coalition)} is not finite: {value!r}")
    return worth


def _name(coalition) -> str:
    return "{" + ", ".join(sorted(map(str, coalition))) + "}" if coalition else "{} (empty coalition)"
