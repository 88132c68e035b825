"""Combine models trained under different seeds into one: ``python -m ner_core.ensemble --out DIR MODEL_DIR ...``.

The models must be trainings of one configuration on the same data (only their seeds differ);
the combined model tags by the mean of their scores (``model.Ensemble``) and loads wherever a
single saved model does (``ner_core.predict``, ``saving.load_model``).
"""

from __future__ import annotations

import argparse
import sys

from . import ledger
from .data import EncodedSplit, load_corpus
from .errors import UserError
from .predict import load_placed
from .runtime import add_runtime_arguments
from .saving import load_model, save_ensemble
from .train import evaluate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ner_core.ensemble",
        description="Combine saved models of one configuration, trained under different seeds, into one model "
        "that tags by the mean of their scores; with --data-dir, score each of them and the combination.",
        epilog="Example: for s in 42 43 44; do python -m ner_core.train --seed $s --out results/seed-$s; done; "
        "python -m ner_core.ensemble --out results/ensemble results/seed-4? --data-dir data/chisiec",
    )
    parser.add_argument(
        "models", nargs="+", metavar="MODEL_DIR", help="folders written by ner_core.train (two or more)"
    )
    parser.add_argument("--out", required=True, help="folder to write the combined model into (replaced whole)")
    parser.add_argument("--data-dir", help="corpus folder: score each model and the combination on its dev split")
    parser.add_argument(
        "--test",
        action="store_true",
        help="with --data-dir, score the test split too (recorded in results/test-readings.jsonl)",
    )
    add_runtime_arguments(parser)
    args = parser.parse_args(argv)
    try:
        if args.test and not args.data_dir:
            raise UserError("--test scores the corpus of --data-dir; give --data-dir too")
        out = save_ensemble(args.out, [load_model(d) for d in args.models], args.models)
        print(f"wrote an ensemble of {len(args.models)} models to {out}")
        if args.data_dir:
            corpus = load_corpus(args.data_dir, with_test=args.test)
            splits = [(name, part) for name, part in (("dev", corpus.dev), ("test", corpus.test)) if part]
            tested = []  # the combination's test scores
            for folder in [*args.models, str(out)]:
                saved = load_placed(folder, args)
                scores = []
                for name, sentences in splits:
                    result = evaluate(
                        saved.model, EncodedSplit(sentences, saved.vocab, saved.tagset), sentences, saved.tagset
                    )
                    scores.append(
                        f"{name} token macro-F1 {result['token_macro_f1']:.4f}  entity F1 {result['entity_f1']:.4f}"
                    )
                    tested = [result] if name == "test" else tested
                print(f"{folder}: " + "   ".join(scores))
            if tested:
                read = ledger.readings(
                    ledger.record("ner_core.ensemble", corpus, [str(out), *args.models], tested).test_sha256
                )
                print(f"{ledger.count_line(read)} ({ledger.ledger_path()})")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"next: echo '太祖遣使至洛陽' | python -m ner_core.predict {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
