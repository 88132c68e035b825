"""Embedding (+ bigram embedding) -> BiLSTM -> (LayerNorm) -> (self-attention) -> dropout -> linear -> CRF.

Padding never changes a prediction: the backward LSTM reads each sentence reversed within
its own length (padding stays behind the real characters), attention masks padded keys,
and the CRF only reads real positions.

``Ensemble`` tags with several such models (one configuration, several seeds) by their mean scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .config import TrainConfig
from .crf import CRF, best_paths
from .runtime import Runtime
from .tags import AllowedTransitions


class SelfAttention(nn.Module):
    """The notebook's scaled dot-product self-attention, with padded keys masked out."""

    def __init__(self, width: int):
        super().__init__()
        self.scaling = width**-0.5

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = torch.bmm(x, x.transpose(1, 2)) * self.scaling
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        return torch.bmm(torch.softmax(scores, dim=-1), x)


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first ``length`` steps of [batch, time, ...]; padding stays in place."""
    steps = torch.arange(x.size(1), device=x.device).unsqueeze(0)
    flipped = lengths.to(x.device).unsqueeze(1) - 1 - steps
    index = torch.where(flipped >= 0, flipped, steps)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class PaddedBiLSTM(nn.Module):
    """A stacked bidirectional LSTM over right-padded batches, exact at every real position.

    Padding after the real steps never reaches them in the forward direction; for the backward
    direction each sentence is reversed within its length first. Two ways to run each direction:
    padded (the CPU's: a packed LSTM's backward pass measured 3-4x slower than the padded one on
    2 cores, torch 2.13, which costs more than the padding saves once batches are length-bucketed)
    or packed (``packed``: cuDNN skips the padded steps on a GPU). Same parameters, same results.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        self.bfloat16 = False  # set by BiLSTMCRF.place from the runtime
        self.packed = False  # likewise
        sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
        self.forward_layers = nn.ModuleList(nn.LSTM(n, hidden_size, batch_first=True) for n in sizes)
        self.backward_layers = nn.ModuleList(nn.LSTM(n, hidden_size, batch_first=True) for n in sizes)
        self.dropout = nn.Dropout(dropout)

    def run(self, lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One direction of one layer over [batch, time, features] -> [batch, time, hidden]."""
        if not self.packed:
            return lstm(x)[0]
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        return nn.utils.rnn.pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=x.size(1))[0]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # The LSTM is ~85% of a training step and runs near the CPU's float32 peak; bfloat16 halves
        # its arithmetic. Weights and everything after the LSTM (LayerNorm, CRF) stay float32.
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bfloat16):
            for depth, (ahead, behind) in enumerate(zip(self.forward_layers, self.backward_layers)):
                if depth:
                    x = self.dropout(x)  # between layers, as nn.LSTM(dropout=...) does
                out_ahead = self.run(ahead, x, lengths)
                out_behind = self.run(behind, reverse_within_length(x, lengths), lengths)
                x = torch.cat([out_ahead, reverse_within_length(out_behind, lengths)], dim=-1)
        return x.float()


def entity_biased(emissions: torch.Tensor, bias: float) -> torch.Tensor:
    """Emissions [..., tags] with ``bias`` added to every tag's score but O's (every TagSet puts O first)."""
    if not bias:
        return emissions
    return torch.cat([emissions[..., :1], emissions[..., 1:] + bias], dim=-1)


class BiLSTMCRF(nn.Module):
    """The tagger. ``loss`` trains it, ``decode`` tags with Viterbi.

    ``allowed`` (``tags.allowed_transitions(tagset)``) is the scheme's constraint, which the CRF's
    Viterbi applies when ``config.constrained``; without it every tag move is allowed (enough to
    count parameters, not to tag). ``bigram_vocab_size`` is the rows of the bigram table, read
    when ``config.bigram_dim`` is set.
    """

    def __init__(
        self,
        config: TrainConfig,
        vocab_size: int,
        num_tags: int,
        allowed: AllowedTransitions | None = None,
        bigram_vocab_size: int = 0,
    ):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(vocab_size, config.embed_dim, padding_idx=0)
        if config.bigram_dim and bigram_vocab_size < 2:
            raise ValueError("bigram_dim is set but there is no bigram table")
        self.bigram_embedding = (
            nn.Embedding(bigram_vocab_size, config.bigram_dim, padding_idx=0) if config.bigram_dim else None
        )
        self.embed_dropout = nn.Dropout(config.embed_dropout)
        self.lstm = PaddedBiLSTM(
            config.embed_dim + config.bigram_dim, config.hidden_size, config.num_layers, config.dropout
        )
        width = 2 * config.hidden_size
        self.layer_norm = nn.LayerNorm(width) if config.layer_norm else nn.Identity()
        self.attention = SelfAttention(width) if config.attention else None
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(width, num_tags)
        self.crf = CRF(num_tags, batch_first=True, allowed=allowed if config.constrained else None)

    def place(self, runtime: Runtime) -> BiLSTMCRF:
        """Move to the runtime's device and compute as fits it: the LSTM in the runtime's precision;
        on a GPU the packed LSTM and the CRF's trees of matrix products, which need fewer kernel
        launches; on a CPU the padded LSTM and the loops, which need the least arithmetic. Returns self."""
        self.lstm.bfloat16 = runtime.bfloat16
        self.lstm.packed = self.crf.scan = runtime.cuda
        return self.to(runtime.device)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Character ids [batch, time], or with bigrams [batch, time, 2] (character id, bigram id),
        to vectors [batch, time, embed_dim + bigram_dim]."""
        if self.bigram_embedding is None:
            return self.embedding(tokens)
        return torch.cat([self.embedding(tokens[..., 0]), self.bigram_embedding(tokens[..., 1])], dim=-1)

    def emissions(self, tokens: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Per-position tag scores [batch, time, tags]; padded positions are left meaningless."""
        x = self.layer_norm(self.lstm(self.embed_dropout(self.embed(tokens)), lengths))
        if self.attention is not None:
            x = self.attention(x, mask)
        return self.classifier(self.dropout(x))

    def decoding_emissions(self, tokens: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The emissions Viterbi reads: with ``config.entity_bias`` added to every tag but O, which
        every TagSet puts first, so that a path's score rises by the bias per entity character."""
        return entity_biased(self.emissions(tokens, mask, lengths), self.config.entity_bias)

    def loss(self, tokens: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per sentence (the notebook's reduction)."""
        emissions = self.emissions(tokens, mask, lengths)
        return -self.crf(emissions, tags, mask=mask, reduction="mean")

    def decode(self, tokens: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Best tag ids per sentence (Viterbi), each as long as the sentence."""
        return self.crf.decode(self.decoding_emissions(tokens, mask, lengths), mask=mask)


class Ensemble(nn.Module):
    """Several trainings of one configuration (their seeds differ) tagging as one model.

    A tag path's score is the mean of its scores under the members, emissions and moves alike, and
    Viterbi returns the path with the best mean score: the mode of the product of the members' CRF
    distributions (each member's normaliser is the same for every path of a sentence, so it drops
    out). The members share the vocabulary, the tag set and the constraint; ``decode`` and ``place``
    work as BiLSTMCRF's do.
    """

    def __init__(self, members: Sequence[BiLSTMCRF]):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.config = members[0].config

    def place(self, runtime: Runtime) -> Ensemble:
        for member in self.members:
            member.place(runtime)
        return self

    def decode(self, tokens: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Best tag ids per sentence under the members' mean scores, each as long as the sentence."""
        emissions = torch.stack([m.decoding_emissions(tokens, mask, lengths) for m in self.members])
        moves = [m.crf.scores(decoding=True) for m in self.members]
        return mean_paths(emissions, moves, mask, scan=self.members[0].crf.scan)


def mean_paths(
    emissions: torch.Tensor,
    moves: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    mask: torch.Tensor,
    scan: bool = False,
) -> list[list[int]]:
    """Viterbi's best tag ids per sentence under several members' mean scores: their emissions
    [members, batch, time, tags] and each one's (start, transitions, end) scores for decoding."""
    # shape: [members, batch, time, tags] -> mean over members, time first: [time, batch, tags]
    mean = emissions.mean(0).transpose(0, 1)
    # forbidden moves are -inf in every member, so still -inf in the means
    start, transitions, end = (torch.stack(scores).mean(0) for scores in zip(*moves))
    return best_paths(mean, mask.t().bool(), start, transitions, end, scan=scan)


Tagger = BiLSTMCRF | Ensemble  # what predict_ids, evaluate and a saved model's ``model`` accept


def with_entity_bias(model: Tagger, bias: float) -> Tagger:
    """The model, decoding from now on with ``bias`` as its ``config.entity_bias`` (an Ensemble's
    members too, whose mean scores it decodes)."""
    for part in (model, *getattr(model, "members", ())):
        part.config = part.config.replace(entity_bias=bias)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
