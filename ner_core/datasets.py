"""Download known corpora from a pinned commit, verify their SHA256 checksums, and install them atomically.

Usage: python -m ner_core.datasets fetch chisiec|cclue [--mirror DIR_OR_URL] [--dest DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shlex
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .data import DEFAULT_DATA_DIR
from .errors import UserError


@dataclass(frozen=True)
class DatasetSpec:
    """A corpus: where its files live and the SHA256 each must have."""

    name: str
    base_url: str
    files: dict[str, str]  # filename -> sha256 (hex)
    description: str = ""


DATASETS: dict[str, DatasetSpec] = {
    "chisiec": DatasetSpec(
        name="chisiec",
        base_url="https://raw.githubusercontent.com/tangxuemei1995/CHisIEC/"
        "646a771064f3cfb3507b419949ba45faf3c63bdb/data/ner",
        files={
            "train.txt": "a5a9aa9f1b0a0dc55807eca36ebeb65762e77624e69a3753705eba5d8a07b72a",
            "dev.txt": "d4c980e887da7226055ac2bb2c5a578686ff199299a7711c34664cda3adb6060",
            "test.txt": "1190aaf64e9dbe82891ecc36379e03f2a4b0062a7486e86cb3c729fc6351de6e",
        },
        description="CHisIEC NER (classical Chinese; PER, LOC, OFI, BOOK in BIOES), LREC-COLING 2024",
    ),
    "cclue": DatasetSpec(
        name="cclue",
        base_url="https://raw.githubusercontent.com/Ethan-yt/CCLUE/ed481c453c1c36397f86905a2bda625ecc5607e1/data/ner",
        files={
            "train.txt": "02b82d1e36a7127911141c07624b837306eccb6405523c6e2c5501ee41d3fbab",
            "dev.txt": "76f41302e8bab50b15d45b19ff78918341cadedebf7ed80dd635d577e56d5f9f",
            "test.txt": "d5a2c293b8ab710b73059030aea029725a963ca5f440ebf2181ac6d8c1c4a136",
        },
        description="CCLUE NER (classical Chinese; NOUN_BOOKNAME, NOUN_OTHER in BIO; sentences up to 510 "
        "characters), Apache-2.0",
    ),
}


def get_spec(name: str) -> DatasetSpec:
    """The registered dataset called `name`, or a UserError listing the known ones."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def default_dest(spec: DatasetSpec) -> Path:
    return Path("data") / spec.name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_url(location: str) -> bool:
    return "://" in location


def _read_source(base: str, filename: str, timeout: float) -> tuple[str, bytes]:
    """(where the bytes came from, the bytes) for `filename` under a URL base or a local folder."""
    if _is_url(base):
        url = base.rstrip("/") + "/" + filename
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return url, response.read()
        except urllib.error.HTTPError as err:
            raise UserError(f"{url}: cannot download (HTTP {err.code} {err.reason})") from None
        except urllib.error.URLError as err:
            raise UserError(f"{url}: cannot download ({err.reason})") from None
        except (OSError, http.client.HTTPException) as err:  # timeouts, resets, truncated bodies
            raise UserError(f"{url}: cannot download ({err or type(err).__name__})") from None
    folder = Path(base)
    if not folder.is_dir():
        raise UserError(f"{folder}: mirror folder not found")
    path = folder / filename
    try:
        return str(path), path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: missing from the mirror folder") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None


def fetch(
    spec: DatasetSpec,
    dest: str | Path,
    mirror: str | Path | None = None,
    timeout: float = 60,
    log: Callable[[str], None] = print,
) -> Path:
    """Get spec's files into `dest`, all verified, or raise UserError and leave `dest` untouched."""
    dest = Path(dest)
    base = str(mirror) if mirror is not None else spec.base_url
    wanted: dict[str, bytes] = {}
    for filename, expected in spec.files.items():
        target = dest / filename
        if target.is_file() and sha256_file(target) == expected:
            log(f"{target}: already present with the right checksum; skipped")
            continue
        source, data = _read_source(base, filename, timeout)
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise UserError(f"{source}: sha256 mismatch (expected {expected}, got {actual}); refusing it")
        log(f"{source}: {len(data):,} bytes, sha256 ok")
        wanted[filename] = data
    if not wanted:
        return dest
    # Stage beside dest (same filesystem) so the final renames are atomic and nothing is left half-written.
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    except OSError as err:
        raise UserError(f"{dest}: cannot write ({err.strerror})") from None
    try:
        for filename, data in wanted.items():
            with (staging / filename).open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        if not dest.exists():
            staging.rename(dest)
        else:
            for filename in wanted:
                os.replace(staging / filename, dest / filename)
    except OSError as err:
        raise UserError(f"{dest}: cannot write ({err.strerror})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ner_core.datasets",
        description="Download a known corpus from a pinned commit and verify its SHA256 checksums.",
        epilog="Examples:\n  python -m ner_core.datasets fetch chisiec --mirror ../shared/chisiec\n"
        "  python -m ner_core.datasets fetch cclue   (into data/cclue)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", help="print the known datasets")
    fetch_parser = commands.add_parser(
        "fetch",
        help="download and verify a dataset",
        description="Download NAME's files, check each SHA256, and only then write them all into DEST. "
        "A checksum mismatch or a failed download leaves DEST unchanged.",
    )
    fetch_parser.add_argument("name", metavar="NAME", help=f"dataset to fetch ({', '.join(sorted(DATASETS))})")
    fetch_parser.add_argument(
        "--mirror",
        metavar="DIR_OR_URL",
        help="local folder or http(s) base URL holding the same files (default: the pinned URL)",
    )
    fetch_parser.add_argument("--dest", metavar="DIR", help="folder to write the files into (default: data/NAME)")
    fetch_parser.add_argument("--timeout", type=float, default=60, help="seconds per download (default 60)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            for spec in DATASETS.values():
                print(f"{spec.name}\t{spec.description}\n\t{spec.base_url}")
            return 0
        spec = get_spec(args.name)
        dest = fetch(spec, args.dest or default_dest(spec), mirror=args.mirror, timeout=args.timeout)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sizes = ", ".join(f"{name} {(dest / name).stat().st_size:,} B" for name in spec.files)
    print(f"\n{spec.name} verified in {dest}: {sizes}")
    # a study per corpus: the default study name keeps the default corpus (study.fingerprint)
    other = [] if dest == DEFAULT_DATA_DIR else ["--data-dir", str(dest), "--study-name", spec.name]
    print(f"next: {shlex.join(['python', '-m', 'study.run', '--trials', '50', *other])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
