"""Atomic file writing and the on-disk formats shared by every rule.

Every writer goes through :func:`atomic_path`: the data lands in a temporary file beside the
destination and is renamed over it only when complete, so a killed job never leaves a
half-written output that a later run could mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    ``suffix`` defaults to the destination's suffix, so writers that append an extension
    (``np.save``) or pick a format from it (PIL, matplotlib) behave as for the real name.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=dest.parent,
        prefix=f".{dest.name}.",
        suffix=suffix if suffix is not None else dest.suffix,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are shared files
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; if the block succeeds, move each file it
    holds into ``path`` (created), each by an atomic rename, ``config.json`` files last and a
    pipeline's ``model_index.json`` after them, so that a folder with a config always has the
    weights it names (diffusers ``save_pretrained``)."""
    dest = Path(path)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        yield tmp
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        last = {"config.json": 1, "model_index.json": 2}
        for src in sorted(files, key=lambda p: last.get(p.name, 0)):
            target = dest / src.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(src, 0o666 & ~_umask())
            os.replace(src, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write one array as .npy (memory-mappable), atomically."""
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write named arrays as an uncompressed .npz, atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def save_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON (indented, keys in insertion order), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


def save_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file (Markdown table, log summary), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_csv(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    """Write a table as CSV without the pandas index, atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def load_json(path: str | os.PathLike) -> Any:
    """Read JSON, naming the file in the error when it is not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def read_weights(weights: str | os.PathLike) -> dict[str, Any]:
    """The tensors of a safetensors file; an unreadable file is named."""
    from safetensors.torch import load_file  # torch-free modules import this one too

    try:
        return load_file(str(weights))
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{weights}: cannot read safetensors weights ({err})") from err


def load_weights(module: Any, weights: str | os.PathLike, config: str | os.PathLike) -> None:
    """Load a safetensors file strictly into ``module``; errors name the file at fault.

    Weights are only ever read as safetensors (no pickle), so a checkpoint cannot run code.
    """
    state = read_weights(weights)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{weights}: weights do not match {config} ({err})") from err


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def read_benchmark(path: str | Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one Snakemake benchmark file (its last repeat)."""
    row = pd.read_csv(path, sep="\t").iloc[-1]
    return float(row["s"]), float(row["cpu_time"])
