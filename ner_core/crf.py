"""pytorch-crf's CRF with its per-step Python loops removed where the maths allows, and a tag
scheme's constraint on the moves between tags.

The gold-path score is a gather over all steps at once, and the Viterbi backtrace follows
every sentence of the batch together (pytorch-crf walks one sentence at a time, one ``.item()``
per character). The forward algorithm and Viterbi run either as loops over time steps (``scan``
off: the fewest operations, best on a CPU) or as trees of matrix products (``scan`` on: log2(time)
steps of batched work, for a GPU, where each small step costs a kernel launch). Without a
constraint: same parameters and results as ``torchcrf.CRF`` either way (tests compare them).

With one (``allowed``, from ``tags.allowed_transitions``), every move the scheme forbids (a
sentence starting with I-X, O -> I-X, B-X -> O in BIOES, ending inside a chunk...) is masked in
Viterbi, so it only ever returns valid tag sequences; the likelihood stays over all paths unless
``constrain_likelihood`` (on CHisIEC that lowered dev scores: docs/design.md, A constrained CRF). The masks enter
in one place, ``scores``.
"""

from __future__ import annotations

import torch
import torchcrf

from .tags import AllowedTransitions

# Why finite in the likelihood: a gold path that makes a forbidden move (corpora with invalid
# transitions are read, not rejected) must still give a finite loss, and a tag no allowed path
# reaches must not turn logsumexp's gradient into NaN. exp(-1e4) is 0 in float32 and float64.
LIKELIHOOD_FORBIDDEN = -1e4


class CRF(torchcrf.CRF):
    """A linear-chain CRF layer; see ``torchcrf.CRF`` for the interface.

    ``allowed`` restricts the moves between tags (None: every move is allowed, as in
    pytorch-crf). Viterbi scores forbidden moves -inf, so no decoded path makes one. The
    likelihood ignores ``allowed`` unless ``constrain_likelihood``; then it is normalised over
    allowed paths only, forbidden moves scoring LIKELIHOOD_FORBIDDEN: a gold path with a
    forbidden move (a corpus with invalid transitions) costs about 1e4 per such move in the loss,
    which stays finite, and its gradient is the usual bounded one (gold minus expected tag counts
    over the allowed paths).
    """

    def __init__(
        self,
        num_tags: int,
        batch_first: bool = False,
        allowed: AllowedTransitions | None = None,
        constrain_likelihood: bool = False,
    ) -> None:
        super().__init__(num_tags, batch_first)
        self.constrain_likelihood = constrain_likelihood
        self.scan = False  # the tree algorithms below instead of the loops over time (see BiLSTMCRF.place)
        if allowed is None:
            start = end = torch.ones(num_tags, dtype=torch.bool)
            transitions = torch.ones(num_tags, num_tags, dtype=torch.bool)
        else:
            start, end = torch.tensor(allowed.start), torch.tensor(allowed.end)
            transitions = torch.tensor(allowed.transitions)
            if (start.shape, transitions.shape, end.shape) != ((num_tags,), (num_tags, num_tags), (num_tags,)):
                raise ValueError(f"allowed transitions are for {len(allowed.start)} tags, not {num_tags}")
        # not persistent: derived from the tag set, and models saved without them still load
        self.register_buffer("start_allowed", start, persistent=False)
        self.register_buffer("transitions_allowed", transitions, persistent=False)
        self.register_buffer("end_allowed", end, persistent=False)

    def scores(self, decoding: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Start, transition and end scores with the constraint applied: what every algorithm reads.

        Decoding (Viterbi) scores forbidden moves -inf; the likelihood (gold score and forward
        algorithm) scores them LIKELIHOOD_FORBIDDEN, or leaves them free without
        ``constrain_likelihood``. Any other implementation of these algorithms should read its
        scores from here too, so that it inherits the constraint.
        """
        if not decoding and not self.constrain_likelihood:
            return self.start_transitions, self.transitions, self.end_transitions
        forbidden = -torch.inf if decoding else LIKELIHOOD_FORBIDDEN
        return (
            self.start_transitions.masked_fill(~self.start_allowed, forbidden),
            self.transitions.masked_fill(~self.transitions_allowed, forbidden),
            self.end_transitions.masked_fill(~self.end_allowed, forbidden),
        )

    def _compute_score(self, emissions: torch.Tensor, tags: torch.LongTensor, mask: torch.Tensor) -> torch.Tensor:
        # emissions [time, batch, tags]; tags and mask [time, batch]; mask[0] is all on
        start, transitions, end = self.scores(decoding=False)
        weights = mask.to(emissions.dtype)
        gold_emissions = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)
        score = start[tags[0]] + (gold_emissions * weights).sum(0)
        score = score + (transitions[tags[:-1], tags[1:]] * weights[1:]).sum(0)
        last = mask.long().sum(0) - 1
        return score + end[tags.gather(0, last.unsqueeze(0)).squeeze(0)]

    def _compute_normalizer(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # emissions [time, batch, tags]; mask [time, batch]
        start, transitions, end = self.scores(decoding=False)
        if self.scan:
            return scan_normalizer(emissions, mask.bool(), start, transitions, end)
        # pytorch-crf's forward algorithm, reading the constrained scores
        on = mask.bool()
        score = start + emissions[0]  # shape: [batch, tags]
        for i in range(1, emissions.size(0)):
            # shape: [batch, previous tag, next tag] -> [batch, next tag]
            step = torch.logsumexp(score.unsqueeze(2) + transitions + emissions[i].unsqueeze(1), dim=1)
            score = torch.where(on[i].unsqueeze(1), step, score)
        return torch.logsumexp(score + end, dim=1)

    def _viterbi_decode(self, emissions: torch.FloatTensor, mask: torch.Tensor) -> list[list[int]]:
        # emissions [time, batch, tags]; mask [time, batch]
        return best_paths(emissions, mask.bool(), *self.scores(decoding=True), scan=self.scan)


def best_paths(
    emissions: torch.Tensor,
    on: torch.Tensor,
    start: torch.Tensor,
    transitions: torch.Tensor,
    end: torch.Tensor,
    scan: bool = False,
) -> list[list[int]]:
    """Viterbi's best tag ids per sentence, each as long as the sentence, from emissions [time, batch,
    tags], the real positions ``on`` [time, batch] and the (constrained) start, transition and end scores."""
    path = (scan_viterbi if scan else loop_viterbi)(emissions, on, start, transitions, end)
    lengths = on.long().sum(0).tolist()  # one host sync for the whole batch
    return [path[:n, b].tolist() for b, n in enumerate(lengths)]


def loop_viterbi(
    emissions: torch.Tensor, on: torch.Tensor, start: torch.Tensor, transitions: torch.Tensor, end: torch.Tensor
) -> torch.Tensor:
    """Best tag per position [time, batch]: pytorch-crf's Viterbi, with the backtrace done for the
    whole batch at once. Positions past a sentence's end hold its last tag."""
    steps = emissions.size(0)
    score = start + emissions[0]  # shape: [batch, tags]
    history = []
    for i in range(1, steps):
        # shape: [batch, previous tag, next tag] -> best previous tag for each next tag: [batch, tags]
        best, indices = (score.unsqueeze(2) + transitions + emissions[i].unsqueeze(1)).max(dim=1)
        score = torch.where(on[i].unsqueeze(1), best, score)
        history.append(indices)
    last = on.long().sum(0) - 1  # shape: [batch], each sentence's last position
    best_last = (score + end).argmax(dim=1)  # shape: [batch]
    path = torch.empty_like(on, dtype=torch.long)  # shape: [time, batch]
    current = best_last  # shape: [batch], the tag at position t of each sentence's best path
    for t in range(steps - 1, -1, -1):
        # a sentence ending at t starts its backtrace here; longer ones continue theirs
        current = torch.where(last == t, best_last, current)
        path[t] = current
        if t:
            # shape: [batch, tags] -> the best previous tag of each sentence's current tag: [batch]
            previous = history[t - 1].gather(1, current.unsqueeze(1)).squeeze(1)
            current = torch.where(t <= last, previous, current)
    return path


# --- without a loop over time steps -------------------------------------------------------------
#
# A linear chain's score is a product of one [tags, tags] matrix per step in a semiring: log-sum-exp
# and + for the partition function, max and + for Viterbi. The product is associative, so a
# balanced tree computes it in log2(time) levels of batched work instead of one small step per
# position (Torch-Struct does the same). A padded step is the semiring's identity matrix. On a GPU
# that turns ~time kernel launches into ~log2(time); on a CPU it costs tags times the arithmetic.


def _step_matrices(emissions: torch.Tensor, on: torch.Tensor, transitions: torch.Tensor) -> torch.Tensor:
    """One matrix per move, [2^k, batch, tags, tags]: entry (i, j) scores tag i at t-1 then j at t.
    Padded steps and the filler up to a power of two are the identity (0 on the diagonal, -inf off it)."""
    steps, batch, tags = emissions.shape
    identity = torch.full((tags, tags), -torch.inf, device=emissions.device, dtype=emissions.dtype)
    identity.fill_diagonal_(0.0)
    moves = transitions + emissions[1:].unsqueeze(2)  # shape: [time - 1, batch, previous tag, next tag]
    moves = torch.where(on[1:, :, None, None], moves, identity)
    size = 1 << max(0, (steps - 2).bit_length())  # a power of two >= time - 1, and at least 1
    filler = identity.expand(size - moves.size(0), batch, tags, tags)
    return torch.cat([moves, filler])


def scan_normalizer(
    emissions: torch.Tensor, on: torch.Tensor, start: torch.Tensor, transitions: torch.Tensor, end: torch.Tensor
) -> torch.Tensor:
    """log Z per sentence [batch], by a tree of log-semiring matrix products."""
    m = _step_matrices(emissions, on, transitions)
    while m.size(0) > 1:
        # shape: [pairs, batch, i, j, 1] + [pairs, batch, 1, j, k] -> sum over j: [pairs, batch, i, k]
        m = torch.logsumexp(m[0::2].unsqueeze(-1) + m[1::2].unsqueeze(-3), dim=-2)
    first = start + emissions[0]  # shape: [batch, tags]
    # shape: [batch, first tag, last tag] -> [batch]
    return torch.logsumexp((first.unsqueeze(2) + m[0] + end).flatten(1), dim=1)


def scan_viterbi(
    emissions: torch.Tensor, on: torch.Tensor, start: torch.Tensor, transitions: torch.Tensor, end: torch.Tensor
) -> torch.Tensor:
    """Best tag per position [time, batch] by a tree of max-plus matrix products.

    Each merge of two neighbouring spans keeps, for every (first tag, last tag) pair, the best tag
    where the spans meet. The best (first, last) pair of the whole sentence then fixes the middle of
    the top span, which fixes the middles of its halves, and so on down: log2(time) gathers.
    """
    m = _step_matrices(emissions, on, transitions)
    size, batch, tags = m.size(0), m.size(1), m.size(2)
    middles = []
    while m.size(0) > 1:
        # shape: [pairs, batch, i, j, k] -> best j for each (i, k): [pairs, batch, i, k]
        m, middle = (m[0::2].unsqueeze(-1) + m[1::2].unsqueeze(-3)).max(dim=-2)
        middles.append(middle)
    total = (start + emissions[0]).unsqueeze(2) + m[0] + end  # shape: [batch, first tag, last tag]
    best = total.flatten(1).argmax(dim=1)  # shape: [batch]
    states = torch.empty(size + 1, batch, dtype=torch.long, device=emissions.device)  # tag at each position
    states[0], states[size] = best // tags, best % tags
    span = size
    for middle in reversed(middles):  # middle: [spans of this level, batch, tags, tags]
        first, last = states[0:size:span], states[span::span]  # shape: [spans, batch]
        states[span // 2 :: span] = middle.flatten(2).gather(2, (first * tags + last).unsqueeze(2)).squeeze(2)
        span //= 2
    return states[: emissions.size(0)]
