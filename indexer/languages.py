"""Language detection from paths and shebangs, and the rules that keep a file out of the index."""
from __future__ import annotations

import logging
import posixpath
import re

from indexer.models import SkipReason

log = logging.getLogger(__name__)

EXTENSIONS: dict[str, str] = {
    "py": "python", "pyi": "python", "pyw": "python",
    "js": "javascript", "mjs": "javascript", "cjs": "javascript", "jsx": "javascript",
    "ts": "typescript", "mts": "typescript", "cts": "typescript", "tsx": "tsx",
    "go": "go", "java": "java", "rs": "rust", "c": "c", "h": "c",
    "cc": "cpp", "cpp": "cpp", "cxx": "cpp", "c++": "cpp", "hpp": "cpp", "hh": "cpp", "hxx": "cpp",
    "h++": "cpp", "ipp": "cpp", "inl": "cpp", "tpp": "cpp",
    "cs": "csharp", "rb": "ruby", "rake": "ruby", "gemspec": "ruby", "ru": "ruby",
    "php": "php", "phtml": "php", "kt": "kotlin", "kts": "kotlin", "scala": "scala", "sc": "scala",
    "swift": "swift", "sh": "shell", "bash": "shell", "zsh": "shell", "ksh": "shell", "fish": "shell",
    "lua": "lua", "pl": "perl", "pm": "perl", "r": "r", "dart": "dart", "ex": "elixir", "exs": "elixir",
    "erl": "erlang", "hrl": "erlang", "hs": "haskell", "ml": "ocaml", "mli": "ocaml",
    "clj": "clojure", "cljs": "clojure", "cljc": "clojure", "groovy": "groovy", "gradle": "groovy",
    "jl": "julia", "zig": "zig", "mm": "objc", "vue": "vue", "svelte": "svelte",
    "proto": "proto", "tf": "hcl", "hcl": "hcl", "bzl": "starlark", "star": "starlark",
    "graphql": "graphql", "gql": "graphql", "sql": "sql", "cmake": "cmake", "mk": "make",
    "html": "html", "htm": "html", "xhtml": "html", "css": "css", "scss": "scss", "sass": "sass",
    "less": "less", "tex": "latex",
    "md": "markdown", "markdown": "markdown", "mdx": "markdown", "rst": "rst", "txt": "text",
    "adoc": "asciidoc", "asciidoc": "asciidoc", "org": "org",
    "yaml": "yaml", "yml": "yaml", "json": "json", "jsonc": "json", "json5": "json", "toml": "toml",
    "xml": "xml", "xsd": "xml", "xsl": "xml", "svg": "xml", "plist": "xml", "ini": "ini", "cfg": "ini",
    "conf": "ini", "properties": "properties", "csv": "csv", "tsv": "csv",
}

FILENAMES: dict[str, str] = {
    "makefile": "make", "gnumakefile": "make", "dockerfile": "dockerfile", "containerfile": "dockerfile",
    "cmakelists.txt": "cmake", "gemfile": "ruby", "rakefile": "ruby", "podfile": "ruby",
    "vagrantfile": "ruby", "brewfile": "ruby", "jenkinsfile": "groovy", "build": "starlark",
    "build.bazel": "starlark", "workspace": "starlark", ".bashrc": "shell", ".bash_profile": "shell",
    ".zshrc": "shell", ".profile": "shell", "readme": "text", "license": "text", "copying": "text",
    "changelog": "text", "authors": "text", "notice": "text", "contributing": "text",
}

INTERPRETERS: dict[str, str] = {
    "python": "python", "pypy": "python", "node": "javascript", "nodejs": "javascript", "deno": "typescript",
    "bun": "javascript", "ts-node": "typescript", "sh": "shell", "bash": "shell", "zsh": "shell",
    "ksh": "shell", "dash": "shell", "ash": "shell", "fish": "shell", "ruby": "ruby", "perl": "perl",
    "php": "php", "lua": "lua", "rscript": "r", "scala": "scala", "groovy": "groovy", "elixir": "elixir",
}

# Names people type for a language filter, beyond the index's own names and file extensions.
LANGUAGE_ALIASES: dict[str, str] = {
    "golang": "go", "c#": "csharp", "cs": "csharp", "c++": "cpp", "objective-c": "objc", "objectivec": "objc",
    "js": "javascript", "node": "javascript", "ecmascript": "javascript", "ts": "typescript",
    "py": "python", "python3": "python", "rb": "ruby", "rs": "rust", "kt": "kotlin", "sh": "shell",
    "bash": "shell", "zsh": "shell", "md": "markdown", "restructuredtext": "rst", "yml": "yaml",
    "terraform": "hcl", "docker": "dockerfile", "makefile": "make", "tex": "latex", "txt": "text",
}


def canonical_language(name: str) -> str:
    """The index's name for a language as a person types it: case-insensitive, with common aliases
    and file extensions (`Python`, `py`, `.py` → python; `golang` → go). Unknown names come back
    lower-cased, so a filter on them matches nothing rather than failing."""
    key = name.strip().lower().lstrip(".")
    if key in LANGUAGE_ALIASES:
        return LANGUAGE_ALIASES[key]
    known = set(EXTENSIONS.values()) | set(FILENAMES.values())
    return key if key in known else EXTENSIONS.get(key, key)


DOC_LANGUAGES = frozenset({"markdown", "rst", "text", "asciidoc", "org", "latex"})
DATA_LANGUAGES = frozenset({"", "yaml", "json", "toml", "xml", "ini", "properties", "csv"})

_CPP_HEADER = re.compile(r"^\s*(class\s+\w+|namespace\b|template\s*<|public:|private:|protected:)|std::", re.MULTILINE)


def _file_name(path: str) -> str:
    return posixpath.basename(path.replace("\\", "/"))


def _from_shebang(head: str) -> str:
    if not head.startswith("#!"):
        return ""
    words = head[2:].split("\n", 1)[0].split()
    if words and posixpath.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    if not words:
        return ""
    name = posixpath.basename(words[0]).lower()
    return INTERPRETERS.get(name) or INTERPRETERS.get(name.rstrip("0123456789.")) or ""


def detect_language(path: str, head: str = "") -> str:
    """Language id from the file name, its extension, then a shebang in `head`; "" when unknown."""
    name = _file_name(path).lower()
    if name in FILENAMES:
        return FILENAMES[name]
    if name.startswith(("dockerfile.", "containerfile.")):
        return "dockerfile"
    stem, dot, ext = name.rpartition(".")
    language = EXTENSIONS.get(ext, "") if dot and stem else ""
    if language == "c" and ext == "h" and _CPP_HEADER.search(head):
        return "cpp"
    return language or _from_shebang(head)


def kind_for(language: str) -> str:
    """The document kind a language's files get: "code", "doc" (prose) or "text" (data, config)."""
    if language in DOC_LANGUAGES:
        return "doc"
    if language in DATA_LANGUAGES:
        return "text"
    return "code"


VENDORED_DIRS = frozenset({
    "vendor", "vendors", "node_modules", "third_party", "third-party", "thirdparty", "bower_components",
    "jspm_packages", ".venv", "venv", "site-packages", "dist-packages", "pods", "carthage", ".yarn",
    ".pnpm-store", ".bundle",
})
GENERATED_DIRS = frozenset({
    ".git", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".nox", ".gradle",
    ".idea", ".next", ".nuxt", ".terraform",
})
LOCK_FILES = frozenset({
    "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "poetry.lock", "pipfile.lock",
    "cargo.lock", "composer.lock", "gemfile.lock", "go.sum", "uv.lock", "pdm.lock", "packages.lock.json",
    "mix.lock", "pubspec.lock", "podfile.lock", "flake.lock", "bun.lockb",
})
GENERATED_SUFFIXES = (
    ".min.js", ".min.css", "-min.js", "-min.css", ".min.mjs", "_pb2.py", "_pb2.pyi", "_pb2_grpc.py",
    ".pb.go", ".pb.gw.go", ".pb.cc", ".pb.h", ".pb.swift", ".g.dart", ".freezed.dart", ".designer.cs",
    ".generated.cs", "_generated.go", ".map",
)
BINARY_EXTENSIONS: dict[str, str] = {
    **dict.fromkeys(("png", "jpg", "jpeg", "gif", "bmp", "ico", "icns", "webp", "tif", "tiff", "psd", "heic",
                     "avif", "xcf"), "image"),
    **dict.fromkeys(("zip", "tar", "gz", "tgz", "bz2", "xz", "zst", "7z", "rar", "jar", "war", "ear", "whl",
                     "egg", "apk", "deb", "rpm", "dmg", "iso", "nupkg", "gem"), "archive"),
    **dict.fromkeys(("ttf", "otf", "woff", "woff2", "eot"), "font"),
    **dict.fromkeys(("pyc", "pyo", "pyd", "so", "dylib", "dll", "exe", "o", "obj", "a", "lib", "class",
                     "wasm", "bin", "elf"), "compiled"),
    **dict.fromkeys(("pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "ods", "odp"), "office"),
    **dict.fromkeys(("mp3", "mp4", "wav", "ogg", "flac", "avi", "mov", "mkv", "webm", "m4a", "aac"), "media"),
    **dict.fromkeys(("sqlite", "sqlite3", "db", "mdb", "pkl", "pickle", "npy", "npz", "h5", "hdf5",
                     "parquet", "onnx", "pt", "pth", "ckpt", "safetensors", "tflite", "pb", "dat"), "data"),
}


def skip_reason_for_path(path: str, size: int, max_bytes: int) -> tuple[SkipReason, str] | None:
    """Why a file should not be read at all, judged from its path and size; None to read it."""
    parts = path.replace("\\", "/").lower().split("/")
    for part in parts[:-1]:
        if part in VENDORED_DIRS:
            return SkipReason.VENDORED, f"under {part}/"
        if part in GENERATED_DIRS:
            return SkipReason.GENERATED, f"under {part}/"
    name = parts[-1]
    ext = name.rpartition(".")[2] if "." in name else ""
    if ext in BINARY_EXTENSIONS:
        return SkipReason.BINARY, f"{BINARY_EXTENSIONS[ext]} file (.{ext})"
    if name in LOCK_FILES:
        return SkipReason.GENERATED, f"lock file {name}"
    suffix = next((s for s in GENERATED_SUFFIXES if name.endswith(s)), "")
    if suffix:
        return SkipReason.GENERATED, f"generated file name (*{suffix})"
    if size > max_bytes:
        return SkipReason.TOO_LARGE, f"{size} bytes > {max_bytes}"
    return None


# Phrases tools write at the top of what they generate; checked only in the first lines.
_GENERATED_MARKERS = re.compile(
    r"code generated .*do not edit|@generated\b|do not (edit|modify)\b.*\bgenerated|generated .*do not (edit|modify)"
    r"|\b(auto-?generated|automatically generated|generated automatically)\b.*\b(file|code|by|from)\b"
    r"|\b(file|code) (is|was|has been) (auto-?generated|automatically generated|generated)",
    re.IGNORECASE,
)
MARKER_LINES = 5
MARKER_BYTES = 2048
MINIFIED_LANGUAGES = frozenset({"javascript", "typescript", "css", "scss", "less", "json", "html", "xml"})
MINIFIED_MIN_BYTES = 2048
MINIFIED_AVG_LINE = 300
MINIFIED_LONGEST_LINE = 5000
UNDECODABLE_RATIO = 0.01


def _bad_utf8_ratio(data: bytes) -> float:
    try:
        data.decode("utf-8")
        return 0.0
    except UnicodeDecodeError:
        text = data.decode("utf-8", "replace")
    # Count replacements the decoder made, not U+FFFD characters the file already held.
    bad = text.count("\ufffd") - data.count("\ufffd".encode())
    return bad / max(len(text), 1)


def _minified(data: bytes) -> str:
    if len(data) < MINIFIED_MIN_BYTES:
        return ""
    lines = data.split(b"\n")
    average = len(data) / len(lines)
    if average > MINIFIED_AVG_LINE:
        return f"average line length {average:.0f} characters"
    longest = max(map(len, lines))
    if longest > MINIFIED_LONGEST_LINE:
        return f"a line of {longest} characters"
    return ""


def skip_reason_for_content(path: str, data: bytes) -> tuple[SkipReason, str] | None:
    """Why a file's bytes should not be indexed (binary, undecodable, generated, minified); None to index.

    Text that is not quite UTF-8 (at most 1% bad bytes, e.g. a Latin-1 name in a comment) is kept
    and decoded with replacement characters by `decode_text`."""
    if b"\x00" in data:
        return SkipReason.BINARY, "contains NUL bytes"
    ratio = _bad_utf8_ratio(data)
    if ratio > UNDECODABLE_RATIO:
        return SkipReason.UNDECODABLE, f"{ratio:.1%} of the text is not valid UTF-8"
    head = data[:MARKER_BYTES].decode("utf-8", "replace").split("\n")[:MARKER_LINES]
    for line in head:
        match = _GENERATED_MARKERS.search(line)
        if match:
            return SkipReason.GENERATED, f"marker {match.group(0)[:60]!r}"
    if detect_language(path) in MINIFIED_LANGUAGES:
        detail = _minified(data)
        if detail:
            return SkipReason.MINIFIED, detail
    return None


def decode_text(data: bytes) -> str:
    """Bytes to text: UTF-8 with the byte-order mark dropped; invalid bytes become U+FFFD."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace")
