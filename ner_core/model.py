"""Embedding -> BiLSTM -> (LayerNorm) -> (self-attention) -> dropout -> linear -> CRF.

Padding never changes a prediction: the LSTM input is packed, attention masks padded keys,
and the CRF only reads real positions.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torchcrf import CRF

from .config import TrainConfig


class SelfAttention(nn.Module):
    """The notebook's scaled dot-product self-attention, with padded keys masked out."""

    def __init__(self, width: int):
        super().__init__()
        self.scaling = width**-0.5

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = torch.bmm(x, x.transpose(1, 2)) * self.scaling
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        return torch.bmm(torch.softmax(scores, dim=-1), x)


class BiLSTMCRF(nn.Module):
    """The tagger. ``loss`` trains it, ``decode`` tags with Viterbi."""

    def __init__(self, config: TrainConfig, vocab_size: int, num_tags: int):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(vocab_size, config.embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(
            config.embed_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        width = 2 * config.hidden_size
        self.layer_norm = nn.LayerNorm(width) if config.layer_norm else nn.Identity()
        self.attention = SelfAttention(width) if config.attention else None
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(width, num_tags)
        self.crf = CRF(num_tags, batch_first=True)

    def emissions(self, tokens: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Per-position tag scores [batch, time, tags]; padded positions are left meaningless."""
        packed = pack_padded_sequence(self.embedding(tokens), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        x, _ = pad_packed_sequence(out, batch_first=True, total_length=tokens.size(1))
        x = self.layer_norm(x)
        if self.attention is not None:
            x = self.attention(x, mask)
        return self.classifier(self.dropout(x))

    def loss(self, tokens: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per sentence (the notebook's reduction)."""
        emissions = self.emissions(tokens, mask, lengths)
        return -self.crf(emissions, tags, mask=mask, reduction="mean")

    def decode(self, tokens: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Best tag ids per sentence (Viterbi), each as long as the sentence."""
        return self.crf.decode(self.emissions(tokens, mask, lengths), mask=mask)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
