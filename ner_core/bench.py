"""``python -m ner_core.bench``: training speed, the notebook's way against ner_core's, in one process.

The notebook's way: random batches, an unpacked ``nn.LSTM(bidirectional=True)``, pytorch-crf's
CRF, attention masked with -1e9, dropout on every padded position. ner_core's way: length-
bucketed batches, the BiLSTM exact under padding, the vectorized CRF, inference mode and
length-sorted batches in evaluation, along the path the device runs (``--paths`` pins others to
compare them); once with a float32 LSTM and, where the hardware does bfloat16, once with a
bfloat16 LSTM (``--precision auto`` picks it in training). Same sizes, same optimizer, same
clipping, same device (``--device``). Prints training tokens/s, the ratio to the notebook's way,
padding fractions, eval sentences/s and the process's peak resident memory for each (on a GPU,
the JSON also has the GPU's peak allocated memory).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
import torchcrf
from torch import nn

from .config import TrainConfig
from .data import EncodedSplit, Vocab, load_corpus
from .errors import UserError
from .model import BiLSTMCRF, SelfAttention
from .runtime import Runtime, add_runtime_arguments, bfloat16_missing, decide_runtime
from .tags import TagSet, allowed_transitions
from .train import predict_ids, seed_everything

PRESETS = {
    "notebook": TrainConfig(),
    "256x2": TrainConfig(hidden_size=256, num_layers=2, batch_size=32, lr=2e-3),
    "256x1": TrainConfig(hidden_size=256, num_layers=1, batch_size=16, lr=2e-3),
    "128x1": TrainConfig(hidden_size=128, num_layers=1, batch_size=32, lr=2e-3),
}
# How ner_core's model runs: "auto" is what BiLSTMCRF.place picks for the device; the others pin
# the LSTM (padded or packed) and the CRF's algorithms (loops over time or trees) to compare them.
PATHS = ("auto", "padded-loop", "packed-loop", "padded-scan", "packed-scan")


class NotebookModel(nn.Module):
    """The notebook's MyAwesomeModel (without its pretrained vectors), for comparison only."""

    def __init__(self, config: TrainConfig, vocab_size: int, num_tags: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, config.embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(
            config.embed_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.layer_norm = nn.LayerNorm(2 * config.hidden_size)
        self.scaling = SelfAttention(2 * config.hidden_size).scaling
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(2 * config.hidden_size, num_tags)
        self.crf = torchcrf.CRF(num_tags, batch_first=True)

    def emissions(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x, _ = self.lstm(self.embedding(tokens))
        x = self.layer_norm(x)
        scores = torch.bmm(x, x.transpose(1, 2)) * self.scaling
        scores = scores.masked_fill(~mask.unsqueeze(1), -1e9)
        x = torch.bmm(torch.softmax(scores, dim=-1), x)
        return self.classifier(self.dropout(x))


class PeakRSS:
    """Highest resident memory of this process while the block runs (sampled every 20 ms)."""

    def __enter__(self) -> PeakRSS:
        self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096


def measure(
    way: str,
    config: TrainConfig,
    train: EncodedSplit,
    dev: EncodedSplit,
    vocab_size: int,
    tagset: TagSet,
    epochs: int,
    max_batches: int | None,
    runtime: Runtime,
    path: str = "auto",
) -> dict[str, Any]:
    """Train ``epochs`` epochs one way (notebook, or ner_core's LSTM in the precision ``way``, along
    ``path``) on the runtime's device; return tokens/s, padding, eval sentences/s, peak RSS."""
    seed_everything(config.seed)
    notebook = way == "notebook"
    if notebook:
        model = NotebookModel(config, vocab_size, len(tagset)).to(runtime.device)
    else:
        model = BiLSTMCRF(config, vocab_size, len(tagset), allowed_transitions(tagset))
        model.place(dataclasses.replace(runtime, precision=way))
        if path != "auto":
            lstm, crf = path.split("-")
            model.lstm.packed, model.crf.scan = lstm == "packed", crf == "scan"
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    order = torch.Generator().manual_seed(config.seed)
    tokens = seconds = 0.0
    groups_seen: list[list[int]] = []
    if runtime.cuda:
        torch.cuda.reset_peak_memory_stats(runtime.device)
    with PeakRSS() as memory:
        for _ in range(epochs):
            groups = (
                train.random_batches(config.batch_size, order)
                if notebook
                else train.bucketed(config.batch_size, order, config.batch_chars)
            )
            groups = groups[:max_batches] if max_batches else groups
            groups_seen += groups
            model.train()
            start = time.perf_counter()
            for group in groups:
                batch = train.batch(group)
                tokens += batch.real_tokens
                batch = batch.to(runtime.device)
                optimizer.zero_grad(set_to_none=True)
                if notebook:
                    emissions = model.emissions(batch.tokens, batch.mask)
                    loss = -model.crf(emissions, batch.tags, mask=batch.mask, reduction="mean")
                else:
                    loss = model.loss(batch.tokens, batch.tags, batch.mask, batch.lengths)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
                optimizer.step()
            synchronize(runtime)
            seconds += time.perf_counter() - start
        start = time.perf_counter()
        if notebook:
            model.eval()
            with torch.no_grad():  # the notebook's eval: file order, batches of 128
                for i in range(0, len(dev), 128):
                    batch = dev.batch(range(i, min(i + 128, len(dev)))).to(runtime.device)
                    model.crf.decode(model.emissions(batch.tokens, batch.mask), mask=batch.mask)
        else:
            predict_ids(model, dev)
        synchronize(runtime)
        eval_seconds = time.perf_counter() - start
    return {
        "way": way if path == "auto" else f"{way} {path}",
        "train_tokens_per_s": tokens / seconds,
        "seconds_per_batch": seconds / len(groups_seen),
        "padding": train.padding_fraction(groups_seen),
        "eval_sentences_per_s": len(dev) / eval_seconds,
        "peak_rss_mib": memory.peak / 2**20,
        "peak_gpu_mib": torch.cuda.max_memory_allocated(runtime.device) / 2**20 if runtime.cuda else None,
    }


def synchronize(runtime: Runtime) -> None:
    """Wait for the GPU's queued work, so that a clock read after it measures the work."""
    if runtime.cuda:
        torch.cuda.synchronize(runtime.device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ner_core.bench",
        description="Training speed of the notebook's loop against ner_core's, in one process, on a real corpus.",
        epilog="Example: python -m ner_core.bench --preset notebook 128x1 256x2 --epochs 1",
    )
    parser.add_argument("--data-dir", help="corpus folder (default: $NER_DATA_DIR, else data/chisiec)")
    parser.add_argument(
        "--preset",
        nargs="+",
        choices=list(PRESETS),
        default=["notebook"],
        help="configurations: notebook (512x3, batch 128), 256x2 and 128x1 (batch 32, lr 2e-3)",
    )
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=["float32", "bfloat16"],
        help="ner_core's way in these LSTM precisions (default: float32, and bfloat16 where the hardware has it; "
        "a bfloat16 row the hardware cannot run is skipped with the reason)",
    )
    parser.add_argument(
        "--paths",
        nargs="+",
        choices=PATHS,
        default=["auto"],
        help="ner_core's model along these paths: auto (default: what the device runs; padded-loop on a CPU, "
        "packed-scan on a GPU), or pinned (LSTM padded or packed, CRF loops over time or trees)",
    )
    parser.add_argument("--epochs", type=int, default=1, help="epochs per way (default 1)")
    parser.add_argument("--max-batches", type=int, help="at most this many batches per epoch (a quick look)")
    add_runtime_arguments(parser, precision=False)
    parser.add_argument("--out", default="results/bench/train.json", help="JSON of the figures")
    args = parser.parse_args(argv)
    try:
        if args.epochs < 1 or (args.max_batches is not None and args.max_batches < 1):
            raise UserError("--epochs and --max-batches must be at least 1")
        runtime = decide_runtime(args.device, args.threads, "float32")  # the rows choose their precision
        runtime.apply()
        corpus = load_corpus(args.data_dir)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    precisions = args.precisions or ["float32", "bfloat16"]
    if "bfloat16" in precisions and (missing := bfloat16_missing(runtime.device)):
        precisions = [p for p in precisions if p != "bfloat16"]
        if args.precisions:  # asked for: say why it is not there
            print(f"bfloat16 rows skipped: bfloat16 {missing}", file=sys.stderr)
    vocab = Vocab.build(corpus.train)
    train = EncodedSplit(corpus.train, vocab, corpus.tagset)
    dev = EncodedSplit(corpus.dev, vocab, corpus.tagset)
    print(
        f"{corpus.summary()}\ntorch {torch.__version__}, {runtime.device_name}, {runtime.threads} thread(s), "
        f"{args.epochs} epoch(s){f' of at most {args.max_batches} batches' if args.max_batches else ''} per way"
    )
    columns = ("config", 9), ("way", 21), ("train tok/s", 11), ("s/batch", 8), ("padding", 8), ("eval sent/s", 11)
    print(" ".join(f"{n:<{w}}" if i < 2 else f"{n:>{w}}" for i, (n, w) in enumerate(columns)) + " peak MiB speed-up")
    rows = []
    for name in args.preset:
        config = PRESETS[name]
        ways = [
            measure("notebook", config, train, dev, len(vocab), corpus.tagset, args.epochs, args.max_batches, runtime)
        ]
        ways += [
            measure(way, config, train, dev, len(vocab), corpus.tagset, args.epochs, args.max_batches, runtime, path)
            for way in precisions
            for path in args.paths
        ]
        for row in ways:
            row.update(config=name, speedup=row["train_tokens_per_s"] / ways[0]["train_tokens_per_s"])
            print(
                f"{name:<9} {row['way']:<21} {row['train_tokens_per_s']:>11,.0f} {row['seconds_per_batch']:>8.2f} "
                f"{row['padding']:>8.1%} {row['eval_sentences_per_s']:>11,.0f} {row['peak_rss_mib']:>9,.0f} "
                f"{row['speedup']:>7.2f}x",
                flush=True,
            )
        rows += ways
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
