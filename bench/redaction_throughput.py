"""Secret detector throughput: megabytes of real files per second through `SecretDetector.redact`.

    .venv/bin/python bench/redaction_throughput.py [--root PATH] [--repeat 5]

Reads the text files git tracks under --root (default: this repository), skips the ones Cairn would not
index anyway (binary, over 1 MB, undecodable), then times `SecretDetector().redact` over all of them,
--repeat times, and prints the best and median pass in CPU seconds of the process (MB/s, files/s) and how
many redactions were made.
Compare two versions of the detector on the same files by pointing PYTHONPATH at each checkout:

    PYTHONPATH=/path/to/old .venv/bin/python bench/redaction_throughput.py --root /path/to/old
    PYTHONPATH=$PWD .venv/bin/python bench/redaction_throughput.py --root /path/to/old

The best pass is the figure to compare on a shared machine (the others include other people's load)."""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from indexer.secrets import SecretDetector

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 1_000_000


def text_files(root: Path) -> list[str]:
    """The decodable text of every file git tracks under root (binary and large files left out)."""
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True).stdout
    texts = []
    for name in listed.decode().split("\0"):
        path = root / name
        if not name or not path.is_file() or path.stat().st_size > MAX_BYTES:
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            texts.append(data.decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return texts


def one_pass(detector: SecretDetector, texts: list[str]) -> tuple[float, int]:
    """CPU seconds of one pass (this process's own time: steadier than the wall clock on a shared machine)."""
    started = time.process_time()
    found = sum(len(detector.redact(text).findings) for text in texts)
    return time.process_time() - started, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="a git checkout whose tracked files are scanned")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes (after one warm-up pass)")
    args = parser.parse_args(argv)
    texts = text_files(args.root)
    size_mb = sum(len(t.encode()) for t in texts) / 1e6
    detector = SecretDetector()
    one_pass(detector, texts)  # warm-up: regex compilation and caches
    passes = [one_pass(detector, texts) for _ in range(max(1, args.repeat))]
    seconds = sorted(p[0] for p in passes)
    result = {"files": len(texts), "mb": round(size_mb, 2), "redactions": passes[0][1],
              "best_seconds": round(seconds[0], 3), "median_seconds": round(statistics.median(seconds), 3),
              "best_mb_per_s": round(size_mb / seconds[0], 2), "files_per_s": round(len(texts) / seconds[0])}
    print(f"{result['files']} files, {result['mb']} MB: best {result['best_seconds']} s "
          f"({result['best_mb_per_s']} MB/s, {result['files_per_s']} files/s), median {result['median_seconds']} s, "
          f"{result['redactions']} redactions", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
