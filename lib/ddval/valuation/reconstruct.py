"""Coalition models rebuilt from the grand coalition's recorded rounds, and their utility.

The training stage records, for the grand coalition, the global model ``G^r`` after every round
(``G^0`` = the initial model) and every institution's local model ``L_c^r`` trained in round ``r``
from ``G^{r-1}`` (``ddval.train.load_rounds``). From these, without any extra training:

* **OR** (Song et al. 2019, one-round reconstruction): ``θ_S = G^0 + Σ_{r=1}^{r*} Σ_{c∈S} w_c^S (L_c^r − G^{r−1})``
  with ``w^S`` the FedAvg weights of the members (equal, or by training-set size when training
  was weighted) and ``r*`` the grand coalition's best round. Every entry of the state dict is
  reconstructed, **BatchNorm running statistics included** (the original froze them at their
  ImageNet values). Since the weights do not change between rounds, ``θ_S = G^0 + Σ_{c∈S} w_c^S D_c``
  with ``D_c = Σ_r (L_c^r − G^{r−1})``: one accumulated update per institution, and any coalition
  is a weighted sum of ``n`` of them. For ``S`` = all, ``θ_S`` telescopes to ``G^{r*}``.
* **Round models** (λ-MR, GTG-Shapley): ``θ_S^r = G^{r−1} + Σ_{c∈S} w_c^S (L_c^r − G^{r−1})``, which is
  the FedAvg merge of the members' local models of round ``r`` (``θ_∅^r = G^{r−1}``, ``θ_all^r = G^r``).

Arithmetic is float64, cast back to each entry's dtype (integer buffers rounded). A reconstructed
BatchNorm running variance can come out slightly negative (a linear combination of updates); it is
clamped at 0 and the number of clamped entries is logged.

:class:`UtilityEvaluator` scores any state with the training stage's utility (mean over the
institutions' test sets of the macro-AUROC over the 8 labels, ``ddval.train.metrics`` rules);
identical test sets (``shared_test`` settings) are forwarded once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ddval.train.aggregate import State, average_states, combine, difference
from ddval.train.metrics import mean_auroc
from ddval.train.results import RoundHistory

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Reconstructed states (the arithmetic is ddval.train.aggregate's)
# --------------------------------------------------------------------------------------------


def member_weights(history: RoundHistory, members: Sequence[str]) -> list[float]:
    """FedAvg weights of ``members`` as training used them, normalised to sum to 1."""
    w = history.aggregation_weights(members) or [1.0] * len(members)
    total = float(sum(w))
    return [x / total for x in w]


def accumulated_updates(
    history: RoundHistory, upto: int | None = None, institutions: Sequence[str] | None = None
) -> dict[str, dict[str, torch.Tensor]]:
    """``D_c = Σ_{r=1}^{upto} (L_c^r − G^{r−1})`` per institution (float64; ``institutions``
    defaults to all recorded ones); ``upto`` defaults to the best round."""
    upto = history.best_round if upto is None else upto
    names = list(history.institutions if institutions is None else institutions)
    zero = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in history.global_state(0).items()}
    total = {c: dict(zero) for c in names}
    for r in range(1, upto + 1):
        prev = history.global_state(r - 1)
        for c in names:
            delta = difference(history.local_state(r, c), prev)
            total[c] = {k: total[c][k] + v for k, v in delta.items()}
    return total


#: Where OR's BatchNorm running statistics come from (``valuation.or_batchnorm``): ``rebuilt`` from the
#: recorded updates like every other entry (ddval's default); the ``grand`` coalition's best model's;
#: the ``initial`` model's (the original froze every ``.norm`` entry, affine weights included, at its
#: ImageNet values). The learnable BatchNorm weights are reconstructed in all three.
OR_BATCHNORM = ("rebuilt", "grand", "initial")
#: State-dict entries that are BatchNorm running statistics (buffers, not trained by SGD).
BATCHNORM_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def or_state(
    history: RoundHistory,
    members: Sequence[str],
    updates: Mapping[str, Mapping[str, torch.Tensor]],
    batchnorm: str = "rebuilt",
) -> State:
    """OR's reconstruction of coalition ``members``: ``G^0 + Σ_{c∈S} w_c^S D_c``, with the BatchNorm
    running statistics as ``batchnorm`` says (:data:`OR_BATCHNORM`)."""
    if batchnorm not in OR_BATCHNORM:
        raise ValueError(f"valuation.or_batchnorm: {batchnorm!r} is not one of {list(OR_BATCHNORM)}")
    state = combine(history.global_state(0), [updates[m] for m in members], member_weights(history, members))
    if batchnorm != "rebuilt":
        source = history.global_state(history.best_round if batchnorm == "grand" else 0)
        for key in state:
            if key.rsplit(".", 1)[-1] in BATCHNORM_STATISTICS:
                state[key] = source[key].clone()
    return state


def round_state(
    history: RoundHistory, round_no: int, members: Sequence[str], locals_: Mapping[str, State] | None = None
) -> State:
    """The round-``round_no`` model of coalition ``members``: the FedAvg merge of their local models
    of that round (``G^{r−1}`` for the empty coalition)."""
    if not members:
        return history.global_state(round_no - 1)
    locals_ = locals_ if locals_ is not None else history.local_states(round_no)
    return average_states([locals_[m] for m in members], history.aggregation_weights(members))


# --------------------------------------------------------------------------------------------
# Utility of a state
# --------------------------------------------------------------------------------------------


def rank_auroc(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """Per-label AUROC of ``(n, L)`` scores, all labels at once: the Mann–Whitney form
    ``(Σ ranks of the positives − n₊(n₊+1)/2) / (n₊ n₋)`` with average ranks for ties, which is the
    area under the ROC curve that ``sklearn.metrics.roc_auc_score`` integrates (ties count ½);
    ``NaN`` for a label with a single class, as ``ddval.train.metrics.per_label_auroc``. It exists
    because the baselines score hundreds of models: 24 scikit-learn calls per model took about as
    long as the model's forward pass; this takes a fraction of a millisecond. Tested equal to
    ``per_label_auroc`` (to 1e-12) with and without ties."""
    from scipy.stats import rankdata

    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} must both be (N, L)")
    if not np.isin(y_true, (0.0, 1.0)).all():
        raise ValueError("y_true must hold 0/1 labels")
    ranks = rankdata(y_score, method="average", axis=0)
    n_pos = y_true.sum(axis=0)
    n_neg = len(y_true) - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * y_true).sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


class UtilityEvaluator:
    """The coalition utility of the training stage for model *states*: mean over the test sets of
    each set's macro-AUROC (``ddval.train.metrics`` rules: NaN labels and sets are left out).

    ``test_sets`` maps institution → ``(ids, images (n, 3, S, S) tensor, labels (n, 8))``; test sets
    with the same ids are forwarded once. ``n_evals`` counts the states scored."""

    def __init__(
        self,
        model: nn.Module,
        test_sets: Mapping[str, tuple[np.ndarray, torch.Tensor, np.ndarray]],
        batch_size: int = 128,
    ):
        if not test_sets:
            raise ValueError("UtilityEvaluator needs at least one test set")
        self.model = model.eval()
        self.batch_size = batch_size
        self.n_evals = 0
        self.n_nonfinite = 0  # states whose outputs were not finite (scored as chance)
        groups: dict[tuple, list[str]] = {}
        for name, (ids, _, _) in test_sets.items():
            groups.setdefault(tuple(map(str, ids)), []).append(name)
        self._sets = []  # (first row, stop row, labels, multiplicity)
        images, start = [], 0
        for names in groups.values():
            _, x, y = test_sets[names[0]]
            images.append(x)
            self._sets.append((start, start + len(x), np.asarray(y), len(names)))
            start += len(x)
        self._images = torch.cat(images)

    @torch.no_grad()
    def scores(self, state: Mapping[str, torch.Tensor]) -> np.ndarray:
        """The model's outputs for every distinct test image (rows in set order)."""
        self.model.load_state_dict(state)
        self.model.eval()
        return torch.cat(
            [self.model(self._images[i : i + self.batch_size]) for i in range(0, len(self._images), self.batch_size)]
        ).numpy()

    def from_scores(self, scores: np.ndarray) -> float:
        """Utility from the outputs of :meth:`scores` (or any ``(n, 8)`` scores in that row order)."""
        per_set, weights = [], []
        for start, stop, y, mult in self._sets:
            per_set.append(mean_auroc(rank_auroc(y, scores[start:stop])))
            weights.append(mult)
        per_set, weights = np.asarray(per_set), np.asarray(weights, dtype=float)
        ok = ~np.isnan(per_set)
        return float(np.sum(per_set[ok] * weights[ok]) / np.sum(weights[ok])) if ok.any() else float("nan")

    def __call__(self, state: Mapping[str, torch.Tensor]) -> float:
        """The utility of ``state``. A state whose outputs are not finite (a reconstruction far from any
        trained model can overflow) ranks nothing: it is worth a random classifier's 0.5, counted in
        ``n_nonfinite`` and logged, rather than a NaN that would leave the whole game undefined."""
        self.n_evals += 1
        scores = self.scores(state)
        if not np.isfinite(scores).all():
            self.n_nonfinite += 1
            log.warning("a reconstructed model gives non-finite outputs; its utility counts as 0.5 (chance)")
            return 0.5
        return self.from_scores(scores)


def test_tensors(
    partition: pd.DataFrame, institutions: Sequence[str], image_size: int
) -> dict[str, tuple[np.ndarray, torch.Tensor, np.ndarray]]:
    """Every institution's test split as ``(scan ids, images, labels)`` (evaluation transform), the
    inputs of :class:`UtilityEvaluator`."""
    from ddval.config import LABELS
    from ddval.data.dataset import XrayDataset

    out = {}
    for name in institutions:
        rows = partition[(partition["institution"] == name) & (partition["split"] == "test")].reset_index(drop=True)
        if rows.empty:
            raise ValueError(f"partition: institution {name!r} has no test scans")
        data = XrayDataset(rows, image_size, train=False)
        out[name] = (
            rows["scan_id"].astype(str).to_numpy(),
            torch.stack([data[i][0] for i in range(len(data))]),
            rows[list(LABELS)].to_numpy(dtype=np.float32),
        )
    return out


# --------------------------------------------------------------------------------------------
# Utilities of reconstructed models, evaluated once and timed (shared by OR, λ-MR, GTG)
# --------------------------------------------------------------------------------------------


class ModelGames:
    """Utilities of the models rebuilt from one recorded training, each scored once and timed.

    ``or_utility(S)`` scores OR's model of coalition ``S``; ``round_utility(r, S)`` the round-``r``
    model of ``S`` (``S = ∅`` is ``G^{r−1}``, ``S`` = all recorded institutions is ``G^r``, so a
    global model is scored once although it is the end of one round and the start of the next).
    Methods that need the same model (λ-MR and GTG-Shapley score the same round models) share the
    score, but each method is charged for every model it asks for: a :meth:`method_cost` records the
    distinct models requested and the measured time of scoring each (building the state included),
    so a method's reported cost is what it would take on its own."""

    def __init__(self, history: RoundHistory, evaluator: UtilityEvaluator):
        self.history = history
        self.evaluator = evaluator
        self._value: dict[tuple, float] = {}
        self._seconds: dict[tuple, float] = {}
        self._costs: list[MethodCost] = []
        self._updates: dict[str, dict[str, torch.Tensor]] = {}
        self._locals: dict[int, dict[str, State]] = {}

    def method_cost(self) -> MethodCost:
        """A context that charges the models requested inside it (see :class:`MethodCost`)."""
        return MethodCost(self)

    def prepare_or(self, institutions: Sequence[str]) -> None:
        """Build the accumulated updates ``D_c`` of ``institutions`` in one pass over the recorded
        rounds (a fixed cost of OR, charged to the open cost records' own time)."""
        missing = [c for c in self._ordered(institutions) if c not in self._updates]
        if missing:
            self._updates.update(accumulated_updates(self.history, institutions=missing))

    def or_utility(self, members: Sequence[str], batchnorm: str = "rebuilt") -> float:
        members = self._ordered(members)

        def make() -> State:
            self.prepare_or(members)  # usually done already, for all members at once
            return or_state(self.history, members, self._updates, batchnorm)

        key = ("or", members) if batchnorm == "rebuilt" else ("or", members, batchnorm)
        return self._get(key, make)

    def round_utility(self, round_no: int, members: Sequence[str]) -> float:
        members = self._ordered(members)
        if not members:
            return self._get(("global", round_no - 1), lambda: self.history.global_state(round_no - 1))
        if members == tuple(self.history.institutions):
            return self._get(("global", round_no), lambda: self.history.global_state(round_no))

        def make() -> State:
            if round_no not in self._locals:
                self._locals = {round_no: self.history.local_states(round_no)}  # keep one round in memory
            return round_state(self.history, round_no, members, self._locals[round_no])

        return self._get(("round", round_no, members), make)

    def _ordered(self, members: Sequence[str]) -> tuple[str, ...]:
        wanted = set(members)
        return tuple(m for m in self.history.institutions if m in wanted)

    def _get(self, key: tuple, make) -> float:
        if key not in self._value:
            start = time.perf_counter()
            self._value[key] = self.evaluator(make())
            self._seconds[key] = time.perf_counter() - start
            for cost in self._costs:
                cost.fresh += self._seconds[key]
        for cost in self._costs:
            cost.keys.add(key)
        return self._value[key]


class MethodCost:
    """What one method cost: ``n_evals`` distinct models scored and ``seconds`` = its own wall time
    with every shared score charged at its measured cost (scores computed earlier for another method
    included, scores computed now counted once)."""

    def __init__(self, games: ModelGames):
        self.games = games
        self.keys: set[tuple] = set()
        self.fresh = 0.0  # time spent scoring inside this record
        self.wall = 0.0

    def __enter__(self) -> MethodCost:
        self.games._costs.append(self)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._start
        self.games._costs.remove(self)

    @property
    def n_evals(self) -> int:
        return len(self.keys)

    @property
    def seconds(self) -> float:
        return self.wall - self.fresh + sum(self.games._seconds[k] for k in self.keys)

    @property
    def eval_seconds(self) -> list[float]:
        """Measured time of scoring each model this method asked for."""
        return [self.games._seconds[k] for k in self.keys]
