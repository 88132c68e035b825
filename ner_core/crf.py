"""pytorch-crf's CRF with its per-step Python loops removed where the maths allows.

The gold-path score is a gather over all steps at once, and the Viterbi backtrace follows
every sentence of the batch together (pytorch-crf walks one sentence at a time, one ``.item()``
per character). The forward algorithm stays a loop over time steps: each step needs the last.
Same parameters and results as ``torchcrf.CRF`` (tests compare them).
"""

from __future__ import annotations

import torch
import torchcrf


class CRF(torchcrf.CRF):
    """A linear-chain CRF layer; see ``torchcrf.CRF`` for the interface."""

    def _compute_score(self, emissions: torch.Tensor, tags: torch.LongTensor, mask: torch.Tensor) -> torch.Tensor:
        # emissions [time, batch, tags]; tags and mask [time, batch]; mask[0] is all on
        weights = mask.to(emissions.dtype)
        gold_emissions = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)
        score = self.start_transitions[tags[0]] + (gold_emissions * weights).sum(0)
        score = score + (self.transitions[tags[:-1], tags[1:]] * weights[1:]).sum(0)
        last = mask.long().sum(0) - 1
        return score + self.end_transitions[tags.gather(0, last.unsqueeze(0)).squeeze(0)]

    def _viterbi_decode(self, emissions: torch.FloatTensor, mask: torch.Tensor) -> list[list[int]]:
        steps = emissions.size(0)
        on = mask.bool()
        score = self.start_transitions + emissions[0]
        history = []
        for i in range(1, steps):
            best, indices = (score.unsqueeze(2) + self.transitions + emissions[i].unsqueeze(1)).max(dim=1)
            score = torch.where(on[i].unsqueeze(1), best, score)
            history.append(indices)
        last = on.long().sum(0) - 1
        best_last = (score + self.end_transitions).argmax(dim=1)
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
