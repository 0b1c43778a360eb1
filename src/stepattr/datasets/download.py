"""Archives from a URL, checksum-verified before anything opens them (cifar10, coco).

A ``file:`` URL is hashed where it lies (a local copy of COCO's 18 GB image archive is not
copied again); http(s) URLs are streamed into a scratch folder that the caller removes.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from stepattr.datasets.base import DatasetError

SCHEMES = ("http", "https", "file")
TIMEOUT_S = 60
CHUNK = 1 << 20


def verified_archive(
    url: str, md5: str, scratch_dir: str | Path, url_key: str, md5_key: str
) -> tuple[Path, dict[str, Any]]:
    """Local path of the archive at ``url`` whose MD5 must be ``md5``, and its digests.

    ``url_key`` and ``md5_key`` name the config keys (``dataset.url``, ``dataset.md5``), so
    that an error names the one at fault. Nothing is opened before the checksum matches.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise DatasetError(f"{url_key} = {url!r}: scheme must be one of {', '.join(SCHEMES)}")
    if parts.scheme == "file":
        path = Path(urllib.request.url2pathname(parts.path))
        if not path.is_file():
            raise DatasetError(f"{url_key} = {url!r}: no such file {path}")
        with open(path, "rb") as handle:
            digests = _digests(iter(lambda: handle.read(CHUNK), b""), path.stat().st_size)
    else:
        path = Path(scratch_dir) / (Path(parts.path).name or "download")
        digests = download(url, path)
    if digests["md5"] != md5.lower():
        raise DatasetError(
            f"{url}: MD5 checksum mismatch: got {digests['md5']}, expected {md5} "
            f"({md5_key}); the file is incomplete or not the official archive"
        )
    return path, digests


def download(url: str, dest: Path) -> dict[str, Any]:
    """Stream ``url`` to ``dest``; return its size, MD5 and SHA-256."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(dest, "wb") as out:
            expected = response.headers.get("Content-Length")
            total = int(expected) if expected else None

            def blocks() -> Iterator[bytes]:
                while block := response.read(CHUNK):
                    out.write(block)
                    yield block

            digests = _digests(blocks(), total)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise DatasetError(f"{url}: download failed ({err})") from err
    if total is not None and digests["bytes"] != total:
        raise DatasetError(f"{url}: download truncated ({digests['bytes']} of {total} bytes)")
    return digests


def _digests(blocks: Iterator[bytes], total: int | None) -> dict[str, Any]:
    md5, sha256, size = hashlib.md5(), hashlib.sha256(), 0
    with tqdm(total=total, unit="B", unit_scale=True, desc="read") as progress:
        for block in blocks:
            md5.update(block)
            sha256.update(block)
            size += len(block)
            progress.update(len(block))
    return {"bytes": size, "md5": md5.hexdigest(), "sha256": sha256.hexdigest()}
