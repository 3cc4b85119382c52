"""Chunks per second: raw fastembed `TextEmbedding.embed` against Cairn's FastEmbedEmbedder on the same texts."""
from __future__ import annotations

import argparse
import logging
import random
import statistics
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fastembed import TextEmbedding
from tokenizers import Tokenizer

from indexer.embedding.fastembed_backend import FastEmbedEmbedder
from indexer.embedding.model_files import ModelLocation, resolve_model
from indexer.settings import Settings


def parse_args() -> argparse.Namespace:
    settings = Settings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=Path(sysconfig.get_paths()["stdlib"]),
                        help="directory whose *.py files are cut into chunks (default: the Python stdlib)")
    parser.add_argument("-n", "--chunks", type=int, default=512, help="number of chunks to embed")
    parser.add_argument("--lines", type=int, default=40, help="lines per chunk window (the longest, with --min-lines)")
    parser.add_argument("--min-lines", type=int, default=0,
                        help="if set, window sizes are drawn from [min-lines, lines] (a mix like the chunker's)")
    parser.add_argument("--batch-size", type=int, default=settings.embed_batch_size)
    parser.add_argument("--threads", type=int, default=settings.embed_threads, help="0 = ONNX Runtime default")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default=settings.embedding_model)
    parser.add_argument("--model-cache", type=Path, default=settings.model_cache_dir)
    parser.add_argument("--quantize", default="", choices=["", "int8"],
                        help="also time Cairn's embedder on this quantized copy against full precision "
                             "(same chunks, alternating order) and report the speed-up and vector agreement")
    parser.add_argument("--quantized-only", action="store_true", help="with --quantize, skip the raw-fastembed part")
    return parser.parse_args()


def load_chunks(root: Path, count: int, lines: int, min_lines: int) -> list[str]:
    """A seeded sample of line windows from the files under root (deterministic per tree)."""
    rng = random.Random(0)
    windows: list[str] = []
    for path in sorted(root.rglob("*.py")):
        try:
            text = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        start = 0
        while start < len(text):
            size = rng.randint(min_lines, lines) if min_lines else lines
            chunk = "\n".join(text[start:start + size])
            start += size
            if chunk.strip():
                windows.append(chunk)
        if len(windows) >= count * 20:
            break
    if len(windows) < count:
        raise SystemExit(f"only {len(windows)} chunks under {root}, asked for {count}")
    return rng.sample(windows, count)


def padded_tokens(lengths: list[int], batch_size: int) -> int:
    """Tokens the model computes, padding included, for batches taken in this order."""
    return sum(len(lengths[i:i + batch_size]) * max(lengths[i:i + batch_size])
               for i in range(0, len(lengths), batch_size))


def timed(run: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    vectors = run()
    return time.perf_counter() - started, vectors


def raw_model(location: ModelLocation, threads: int | None) -> TextEmbedding:
    kwargs = {"specific_model_path": str(location.path)} if location.path else {}
    cache = str(location.fastembed_cache) if location.fastembed_cache else None
    return TextEmbedding(location.model_name, cache_dir=cache, threads=threads, **kwargs)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    texts = load_chunks(args.root, args.chunks, args.lines, args.min_lines)
    threads = args.threads or None
    location = resolve_model(args.model, args.model_cache)
    cairn = FastEmbedEmbedder(location, batch_size=args.batch_size, threads=threads)
    if args.quantize and args.quantized_only:
        compare_quantized(args, texts, cairn)
        return
    raw = raw_model(location, threads)

    def run_raw() -> np.ndarray:
        return np.asarray(list(raw.embed(texts, batch_size=args.batch_size)), dtype=np.float32)

    def run_cairn() -> np.ndarray:
        return cairn.embed_documents(texts)

    list(raw.embed(texts[:8], batch_size=args.batch_size))  # warm both sessions up
    cairn.embed_documents(texts[:8])
    rows: list[tuple[int, float, float]] = []
    for repeat in range(args.repeats):
        order = [run_raw, run_cairn] if repeat % 2 == 0 else [run_cairn, run_raw]
        results = {fn: timed(fn) for fn in order}
        rows.append((repeat + 1, results[run_raw][0], results[run_cairn][0]))
    diff = float(np.abs(results[run_raw][1] - results[run_cairn][1]).max())
    report(args, texts, raw.model.tokenizer, location, rows, diff)
    if args.quantize:
        compare_quantized(args, texts, cairn)


def compare_quantized(args: argparse.Namespace, texts: list[str], full: FastEmbedEmbedder) -> None:
    """Full precision against the quantized copy: chunks/s of each, speed-up, cosine of paired vectors."""
    location = resolve_model(args.model, args.model_cache, args.quantize)
    quantized = FastEmbedEmbedder(location, batch_size=args.batch_size, threads=args.threads or None)
    quantized.embed_documents(texts[:8])
    rows: list[tuple[float, float]] = []
    for repeat in range(args.repeats):
        if repeat % 2 == 0:
            full_s, full_v = timed(lambda: full.embed_documents(texts))
            quant_s, quant_v = timed(lambda: quantized.embed_documents(texts))
        else:
            quant_s, quant_v = timed(lambda: quantized.embed_documents(texts))
            full_s, full_v = timed(lambda: full.embed_documents(texts))
        rows.append((full_s, quant_s))
    cosines = np.sum(full_v * quant_v, axis=1)  # both L2-normalised
    n = len(texts)
    print(f"\nquantized model {location.key} ({args.quantize}) against {full.model_name}")
    print(f"{'run':>4} {'fp32 chunks/s':>14} {args.quantize + ' chunks/s':>15} {'speed-up':>9}")
    for repeat, (full_s, quant_s) in enumerate(rows, 1):
        print(f"{repeat:>4} {n / full_s:>14.1f} {n / quant_s:>15.1f} {full_s / quant_s:>9.2f}")
    full_s, quant_s = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
    print(f"{'med':>4} {n / full_s:>14.1f} {n / quant_s:>15.1f} {full_s / quant_s:>9.2f}")
    print(f"cosine(fp32, {args.quantize}) per chunk: mean {cosines.mean():.4f}, min {cosines.min():.4f}")


def report(args: argparse.Namespace, texts: list[str], tokenizer: Tokenizer, location: ModelLocation,
           rows: list[tuple[int, float, float]], diff: float) -> None:
    n = len(texts)
    lengths = [sum(e.attention_mask) for e in tokenizer.encode_batch(texts)]
    span = f"{args.min_lines}-{args.lines}" if args.min_lines else str(args.lines)
    print(f"model {location.key}  chunks {n} x {span} lines from {args.root}")
    print(f"batch {args.batch_size}  threads {args.threads or 'ort default'}  repeats {args.repeats}")
    print(f"tokens {sum(lengths)}; computed with padding: raw order {padded_tokens(lengths, args.batch_size)}, "
          f"token-sorted (cairn) {padded_tokens(sorted(lengths), args.batch_size)}")
    print(f"{'run':>4} {'raw chunks/s':>14} {'cairn chunks/s':>15} {'ratio':>7}")
    for repeat, raw_s, cairn_s in rows:
        print(f"{repeat:>4} {n / raw_s:>14.1f} {n / cairn_s:>15.1f} {raw_s / cairn_s:>7.2f}")
    for label, pick in (("best", min), ("med", statistics.median)):
        raw_s, cairn_s = pick(r[1] for r in rows), pick(r[2] for r in rows)
        print(f"{label:>4} {n / raw_s:>14.1f} {n / cairn_s:>15.1f} {raw_s / cairn_s:>7.2f}")
    print(f"max |raw - cairn| = {diff:.2e}; target: cairn >= 0.90x raw (best-of on a shared machine)")


if __name__ == "__main__":
    main()
