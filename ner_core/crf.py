"""pytorch-crf's CRF with its per-step Python loops removed where the maths allows, and a tag
scheme's constraint on the moves between tags.

The gold-path score is a gather over all steps at once, and the Viterbi backtrace follows
every sentence of the batch together (pytorch-crf walks one sentence at a time, one ``.item()``
per character). The forward algorithm stays a loop over time steps: each step needs the last.
Without a constraint: same parameters and results as ``torchcrf.CRF`` (tests compare them).

With one (``allowed``, from ``tags.allowed_transitions``), every move the scheme forbids (a
sentence starting with I-X, O -> I-X, B-X -> O in BIOES, ending inside a chunk...) is masked in
Viterbi, so it only ever returns valid tag sequences; the likelihood stays over all paths unless
``constrain_likelihood`` (on CHisIEC that lowered dev scores: see the README). The masks enter
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
        # pytorch-crf's forward algorithm, reading the constrained scores
        start, transitions, end = self.scores(decoding=False)
        on = mask.bool()
        score = start + emissions[0]  # shape: [batch, tags]
        for i in range(1, emissions.size(0)):
            # shape: [batch, previous tag, next tag] -> [batch, next tag]
            step = torch.logsumexp(score.unsqueeze(2) + transitions + emissions[i].unsqueeze(1), dim=1)
            score = torch.where(on[i].unsqueeze(1), step, score)
        return torch.logsumexp(score + end, dim=1)

    def _viterbi_decode(self, emissions: torch.FloatTensor, mask: torch.Tensor) -> list[list[int]]:
        start, transitions, end = self.scores(decoding=True)
        steps = emissions.size(0)
        on = mask.bool()
        score = start + emissions[0]
        history = []
        for i in range(1, steps):
            best, indices = (score.unsqueeze(2) + transitions + emissions[i].unsqueeze(1)).max(dim=1)
            score = torch.where(on[i].unsqueeze(1), best, score)
            history.append(indices)
        last = on.long().sum(0) - 1
        best_last = (score + end).argmax(dim=1)
        path = torch.empty_like(on, dtype=torch.long)
        current = best_last
        for t in range(steps - 1, -1, -1):
            # a sentence ending at t starts its backtrace here; longer ones continue theirs
            current = torch.where(last == t, best_last, current)
            path[t] = current
            if t:
                previous = history[t - 1].gather(1, current.unsqueeze(1)).squeeze(1)
                current = torch.where(t <= last, previous, current)
        return [path[: n + 1, b].tolist() for b, n in enumerate(last.tolist())]
