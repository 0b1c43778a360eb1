"""cifar10: the official CIFAR-10 python tarball, downloaded, MD5-verified, then parsed in memory.

The tarball holds pickled dicts (Python 2 pickles). Nothing is extracted to disk: only the
expected members are read, and they are unpickled by :class:`CifarUnpickler`, which resolves
no global except numpy's array reconstruction, so even a tarball that passed the checksum
cannot run code while it is parsed.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from stepattr.datasets.base import DatasetError, LabeledImages
from stepattr.datasets.download import verified_archive

TOP = "cifar-10-batches-py"
TRAIN_MEMBERS = tuple(f"{TOP}/data_batch_{i}" for i in range(1, 6))
TEST_MEMBER = f"{TOP}/test_batch"
META_MEMBER = f"{TOP}/batches.meta"
NATIVE_SIZE = 32

_reconstruct = np.zeros(0).__reduce__()[0]  # numpy's array rebuild function, whatever its module


class CifarUnpickler(pickle.Unpickler):
    """Unpickler that allows only the globals a CIFAR-10 batch refers to."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # as written by numpy 1 / Py2
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # as written by numpy 2
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"global {module}.{name} is not allowed in a CIFAR-10 batch"
            ) from None


def load_cifar10(
    url: str, md5: str, scratch_dir: str | Path
) -> tuple[LabeledImages, LabeledImages, dict[str, Any]]:
    """Official train (50,000) and test (10,000) images as uint8 (N, 3, 32, 32), and provenance.

    The tarball is downloaded into ``scratch_dir`` (the caller removes it; a ``file:`` URL is
    read in place) and checked against ``md5`` before it is opened.
    """
    tarball, digests = verified_archive(url, md5, scratch_dir, "dataset.url", "dataset.md5")
    train, test = read_tarball(tarball, url)
    return train, test, {"url": url, "tarball": digests}


def read_tarball(path: Path, url: str) -> tuple[LabeledImages, LabeledImages]:
    """Parse the expected members of a CIFAR-10 python tarball (nothing is extracted)."""
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            label_names = _read_meta(_member_bytes(tar, META_MEMBER))
            train = [_read_batch(_member_bytes(tar, m), m, label_names) for m in TRAIN_MEMBERS]
            test = _read_batch(_member_bytes(tar, TEST_MEMBER), TEST_MEMBER, label_names)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise DatasetError(f"{url}: truncated or corrupt tarball ({err})") from err
    images, labels = (np.concatenate(parts) for parts in zip(*train, strict=True))
    names = tuple(label_names)
    return (
        LabeledImages(images, labels, names, np.arange(len(labels), dtype=np.int64)),
        LabeledImages(test[0], test[1], names, np.arange(len(test[1]), dtype=np.int64)),
    )


def _member_bytes(tar: tarfile.TarFile, name: str) -> bytes:
    try:
        member = tar.getmember(name)
    except KeyError:
        raise DatasetError(f"CIFAR-10 tarball has no member {name}") from None
    handle = tar.extractfile(member) if member.isfile() else None
    if handle is None:
        raise DatasetError(f"CIFAR-10 tarball member {name} is not a regular file")
    return handle.read()


def _unpickle(raw: bytes, member: str) -> dict:
    try:
        obj = CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise DatasetError(f"CIFAR-10 tarball member {member}: unreadable ({err})") from err
    if not isinstance(obj, dict):
        raise DatasetError(f"CIFAR-10 tarball member {member}: not a pickled dict")
    return obj


def _read_meta(raw: bytes) -> list[str]:
    names = _unpickle(raw, META_MEMBER).get(b"label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise DatasetError(f"CIFAR-10 tarball member {META_MEMBER}: expected 10 label_names")
    return [n.decode("ascii") if isinstance(n, bytes) else str(n) for n in names]


def _read_batch(raw: bytes, member: str, label_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(raw, member)
    data, labels = batch.get(b"data"), batch.get(b"labels")
    size = 3 * NATIVE_SIZE * NATIVE_SIZE
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
        raise DatasetError(f"CIFAR-10 tarball member {member}: data is not a uint8 matrix")
    if data.shape[1] != size or labels is None or len(labels) != len(data):
        raise DatasetError(
            f"CIFAR-10 tarball member {member}: expected data (N, {size}) and N labels"
        )
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and not 0 <= labels.min() <= labels.max() < len(label_names):
        raise DatasetError(f"CIFAR-10 tarball member {member}: label outside 0..9")
    return data.reshape(-1, 3, NATIVE_SIZE, NATIVE_SIZE), labels
