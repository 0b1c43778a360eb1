"""The attribution explorer: the data it embeds (pure Python) and the page in a real browser.

The browser tests drive headless Chromium through Selenium (Debian's ``chromium`` and
``chromium-driver``, which .ci/install-chromium.sh installs; without them they skip and say
why). They check the page against ``scores.npy`` itself, never against the page's own data:
at every step the influencer tiles must be the training rows the score file ranks first, and
their pixels the training split's images of those rows. A tiny run built here (seconds) serves
the default tests; the ``integration`` test checks the page of the ci run (the session's
``ci_run``, or the finished ci outdir that STEPATTR_CI_OUTDIR names, e.g. results/ci).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stepattr.core.io import load_json, save_csv
from stepattr.explorer.data import DATA_KEYS, lds_lookup, method_setting, page_data, png_uri
from stepattr.explorer.jobs import explorer_job
from stepattr.explorer.page import embed_json, render_page, save_page
from stepattr.targets.generate import save_targets
from stepattr.targets.sets import load_target_sets
from stepattr.trak.storage import save_scores, score_row
from stepattr.transitions.curves import interval_table

GRID = [900, 500, 0]
SIDE = 8
N_TRAIN = 40
TOP_K = 3
SETS = {"generated": [0, 1, 2], "validation": [3, 4]}
CLASSES = ["zero", "one", "two", "three"]
METHODS = ["trak", "dtrak"]
# Debian's chromium and chromium-driver; STEPATTR_CHROMIUM / STEPATTR_CHROMEDRIVER name others
CHROMIUM = os.environ.get("STEPATTR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = (
    os.environ.get("STEPATTR_CHROMEDRIVER")
    or shutil.which("chromedriver")
    or "/usr/bin/chromedriver"
)
LAPTOP = (1366, 768)


# ----------------------------------------------------------------------------- a tiny run


def make_tiny_run(root: Path, captioned: bool = False) -> dict:
    """The files the explorer reads, at toy sizes: a split, two target sets, two methods'
    scores, an LDS table with a ceiling, feature curves and intervals, patch scores."""
    rng = np.random.default_rng(0)
    train = root / "data" / "toy" / "train.npz"
    train.parent.mkdir(parents=True)
    split = {
        "images": rng.integers(0, 256, (N_TRAIN, 1, SIDE, SIDE), dtype=np.uint8),
        "labels": np.arange(N_TRAIN) % len(CLASSES),
        "class_names": np.array(CLASSES),
    }
    if captioned:
        split["captions"] = np.array(
            [[f"a {CLASSES[i % 4]} digit", f"number {i} </script>"] for i in range(N_TRAIN)]
        )
    np.savez(train, **split)
    target_files = []
    for name, ids in SETS.items():
        m = len(ids)
        path = root / "targets" / f"{name}.npz"
        save_targets(
            path,
            {
                "x_t": rng.uniform(-1, 1, (m, len(GRID), 1, SIDE, SIDE)).astype(np.float32),
                "x0hat": rng.uniform(-1, 1, (m, len(GRID), 1, SIDE, SIDE)).astype(np.float32),
                "x0": rng.uniform(-1, 1, (m, 1, SIDE, SIDE)).astype(np.float32),
                "grid": np.array(GRID, dtype=np.int64),
                "target_id": np.array(ids, dtype=np.int64),
                "label": np.array([-1] * m if name == "generated" else [1, 2], dtype=np.int64),
                "source_index": np.array(
                    [-1] * m if name == "generated" else [7, 9], dtype=np.int64
                ),
            },
        )
        target_files.append(path)
    targets = load_target_sets(target_files, list(SETS))
    score_dirs = {}
    for method in METHODS:
        directory = root / "scores" / method
        scores = rng.normal(size=(len(targets.target_id), len(GRID), N_TRAIN)).astype(np.float32)
        save_scores(
            {k: directory / f"{k}.{e}" for k, e in (("scores", "npy"), ("index", "csv"))}
            | {"meta": directory / "meta.json"},
            scores,
            targets.index(),
            {"method": method, "grid": GRID, "lambda": 0.1, "models": [{"model_id": "full_0"}]},
        )
        score_dirs[method] = directory
    lds = pd.DataFrame(
        [
            {
                "method": method,
                "target_set": group,
                "step": step,
                "lds": 0.1 * g + 0.01 * i,
                "ci_low": 0.1 * g + 0.01 * i - 0.05,
                "ci_high": 0.1 * g + 0.01 * i + 0.05,
                "n_targets": 5 if group == "all" else len(SETS.get(group, [])),
                "n_excluded": 0,
            }
            for i, method in enumerate([*METHODS, "ceiling"])
            for group in ("all", *SETS)
            for g, step in enumerate(GRID)
        ]
    )
    save_csv(root / "tables" / "lds.csv", lds)
    curves, intervals = [], []
    for name, ids in SETS.items():
        rows = [
            {
                "target_id": tid,
                "step": step,
                "p": p,
                "ci_low": max(0.0, p - 0.2),
                "ci_high": min(1.0, p + 0.2),
                "n": 8,
                "feature": tid % 4,
                "detector": "classifier",
            }
            for tid in ids
            for step, p in zip(GRID, (0.1, 0.6, 1.0), strict=True)
        ]
        frame = pd.DataFrame(rows)
        curves.append(root / "transitions" / f"{name}.csv")
        intervals.append(root / "transitions" / f"{name}_intervals.csv")
        save_csv(curves[-1], frame)
        save_csv(intervals[-1], interval_table(frame))
    patch_dir = root / "scores" / "trak" / "patches"
    patch_index = pd.DataFrame(
        [
            {
                "target_set": s,
                "target_id": t,
                "patch": p,
                "x0": b[0],
                "y0": b[1],
                "x1": b[2],
                "y1": b[3],
            }
            for s, t in (("generated", 0), ("validation", 3))
            for p, b in (("center", (2, 2, 6, 6)), ("top_left", (0, 0, 4, 4)))
        ]
    )
    patch_index.insert(0, "row", np.arange(len(patch_index)))
    patch_files = {
        "scores": patch_dir / "scores.npy",
        "index": patch_dir / "index.csv",
        "meta": patch_dir / "meta.json",
    }
    save_scores(
        patch_files,
        rng.normal(size=(len(patch_index), 2, N_TRAIN)).astype(np.float32),
        patch_index,
        {"method": "trak", "steps": [500, 0]},
    )
    return {
        "score_dirs": score_dirs,
        "target_files": target_files,
        "target_sets": list(SETS),
        "train_path": train,
        "lds_path": root / "tables" / "lds.csv",
        "curve_paths": curves,
        "interval_paths": intervals,
        "patch_files": patch_files,
    }


def build_tiny_page(root: Path, captioned: bool = False) -> tuple[Path, dict, dict]:
    """The tiny run and its page: (index.html, the job's inputs, the page data)."""
    run = make_tiny_run(root, captioned)
    html = root / "explorer" / "index.html"
    data = explorer_job(
        **run,
        top_k=TOP_K,
        html=html,
        provenance={"config_files": ["tiny"], "config_overrides": {}},
    )
    return html, run, data


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    return build_tiny_page(tmp_path_factory.mktemp("explorer"))


# ----------------------------------------------------------------------------- the data


def decode_uri(uri: str) -> np.ndarray:
    """A PNG data URI's pixels as (H, W) or (H, W, 3) uint8."""
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix), uri[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri[len(prefix) :]))))


def test_page_data_ranks_influencers_as_the_score_files(tiny) -> None:
    """Per method, target and step: the k highest and k lowest scores of scores.npy, strongest
    first, with their scores; the thumbnails are exactly those rows, pixel for pixel."""
    _, run, data = tiny
    assert tuple(data) == DATA_KEYS
    assert data["grid"] == GRID and data["top_k"] == TOP_K and data["n_train"] == N_TRAIN
    assert data["side"] == SIDE and not data["captioned"]
    assert [m["name"] for m in data["methods"]] == METHODS
    assert [m["setting"] for m in data["methods"]] == ["lambda 0.1"] * 2
    with np.load(run["train_path"]) as split:
        images = split["images"]
    index = pd.read_csv(run["score_dirs"]["trak"] / "index.csv")
    assert [t["id"] for t in data["targets"]] == index["target_id"].tolist()
    used = set()
    for method in METHODS:
        scores = np.load(run["score_dirs"][method] / "scores.npy")
        for i, target in enumerate(data["targets"]):
            row = score_row(index, target["id"], target["set"])
            for g in range(len(GRID)):
                pos, pos_scores, neg, neg_scores = data["top"][method][i][g]
                assert pos == np.argsort(-scores[row, g])[:TOP_K].tolist()
                assert neg == np.argsort(scores[row, g])[:TOP_K].tolist()
                np.testing.assert_allclose(pos_scores, scores[row, g, pos], rtol=1e-3)
                np.testing.assert_allclose(neg_scores, scores[row, g, neg], rtol=1e-3)
                assert pos_scores == sorted(pos_scores, reverse=True)
                used |= {*pos, *neg}
    patch_rows = {r for rows in data["patches"]["targets"].values() for p in rows
                  for top in p["top"] for r in top[0]}  # fmt: skip
    assert set(map(int, data["train"])) == used | patch_rows  # only the shown images
    assert len(data["train"]) < N_TRAIN or len(used | patch_rows) == N_TRAIN
    for row, entry in data["train"].items():
        np.testing.assert_array_equal(decode_uri(entry["img"]), images[int(row), 0])
        assert entry["label"] == CLASSES[int(row) % 4] and entry["caption"] is None


def test_page_data_targets_curves_lds_and_patches(tiny) -> None:
    _, run, data = tiny
    by_id = {t["id"]: t for t in data["targets"]}
    assert by_id[0]["set"] == "generated" and by_id[0]["label"] is None
    assert by_id[3]["set"] == "validation" and by_id[3]["label"] == "one"
    with np.load(run["target_files"][1]) as validation:
        x_t = validation["x_t"]
    assert len(by_id[3]["x_t"]) == len(GRID) == len(by_id[3]["x0hat"])
    want = np.clip(np.round((x_t[0, 1, 0] + 1) * 127.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(decode_uri(by_id[3]["x_t"][1]), want)
    # the curve follows the grid; the interval is the steepest rise (0.1 -> 0.6 -> 1.0)
    assert by_id[2]["curve"]["p"] == [0.1, 0.6, 1.0]
    assert by_id[2]["interval"] == {"t_start": 900, "t_end": 500, "rise": 0.5}
    assert by_id[2]["feature"] == "two" and by_id[2]["detector"] == "classifier"
    # LDS by method, target set and step; the ceiling is there under its own name
    assert set(data["lds"]) == {*METHODS, "ceiling"}
    lds, low, high, n = data["lds"]["dtrak"]["validation"]["500"]
    assert (lds, n) == (pytest.approx(0.11), 2) and low < lds < high
    # patches: one entry per (target, patch), top-k positive per patch step
    patches = data["patches"]
    assert patches["method"] == "trak" and patches["steps"] == [500, 0]
    assert [p["name"] for p in patches["targets"]["3"]] == ["center", "top_left"]
    values = np.load(run["patch_files"]["scores"])
    assert patches["targets"]["3"][1]["top"][0][0] == np.argsort(-values[3, 0])[:TOP_K].tolist()


def test_lds_lookup_keeps_nan_as_null_and_needs_its_columns() -> None:
    frame = pd.DataFrame(
        [
            {
                "method": "trak",
                "target_set": "all",
                "step": 0,
                "lds": np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "n_targets": 0,
            }
        ]
    )
    assert lds_lookup(frame) == {"trak": {"all": {"0": [None, None, None, 0]}}}
    with pytest.raises(ValueError, match="missing columns"):
        lds_lookup(frame.drop(columns=["ci_low"]))


def test_page_data_checks_top_k_and_score_shapes(tiny, tmp_path: Path) -> None:
    _, run, data = tiny
    with pytest.raises(ValueError, match=r"explorer.top_k = 41 must lie in \[1, 40\]"):
        explorer_job(**run, top_k=N_TRAIN + 1, html=tmp_path / "x.html", provenance={})
    assert not (tmp_path / "x.html").exists()
    with pytest.raises(ValueError, match="at least one scored method"):
        page_data(
            target_ids=[], target_sets=[], target_labels=[], prompts=None, trajectories={},
            grid=GRID, train=None, methods=[], top_k=1,
        )  # fmt: skip


def test_captions_and_script_end_tags_are_embedded_safely(tmp_path: Path) -> None:
    html, _, data = build_tiny_page(tmp_path, captioned=True)
    assert data["captioned"]
    entry = next(iter(data["train"].values()))
    assert entry["caption"].startswith("a ") and "</script>" in entry["caption"]
    text = html.read_text()
    assert text.count("</script>") == 2  # the data block's end and the script's, nothing inside
    embedded = embed_json({"caption": "</script><!--"})
    assert "<" not in embedded and json.loads(embedded) == {"caption": "</script><!--"}


def test_page_is_self_contained(tiny) -> None:
    """No server, no network: nothing is fetched (images inline, script and styles inline)."""
    html, _, data = tiny
    text = html.read_text()
    assert "<script src" not in text and 'rel="stylesheet"' not in text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", text) and "@import" not in text
    # the one http string is the SVG namespace, a name and not a fetch
    assert set(re.findall(r"https?://[^\s\"'`)]+", text)) == {"http://www.w3.org/2000/svg"}
    assert "image-rendering: pixelated" in text
    assert text.count("data:image/png;base64,") == (
        len(data["train"]) + sum(1 + 2 * len(GRID) for _ in data["targets"])
    )


def test_method_setting_names_lambda_or_damping() -> None:
    assert method_setting({"lambda": 0.1, "models": []}) == "lambda 0.1"
    assert method_setting({"damping": 1e-05}) == "damping 1e-05"
    assert method_setting({"lambda": None, "embedder": "classifier"}) is None


def test_png_uri_keeps_pixels_and_clips_model_space() -> None:
    rgb = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    np.testing.assert_array_equal(decode_uri(png_uri(rgb)), rgb.transpose(1, 2, 0))
    floats = np.array([[[-2.0, -1.0, 0.0, 1.0, 3.0]]], dtype=np.float32)
    assert decode_uri(png_uri(floats)).tolist() == [[0, 0, 128, 255, 255]]


# ----------------------------------------------------------------------------- the browser


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).is_file():
            return f"{path} not found: install Debian's {package} (.ci/install-chromium.sh)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


def start_chromium(profile: str):
    """Headless Chromium with its viewport at a laptop's size, its console kept, and flags
    that keep it off the (closed) network, where it would otherwise wait on connections."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    # the viewport itself at the laptop's size (the window's size includes its frame)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": LAPTOP[0], "height": LAPTOP[1], "deviceScaleFactor": 1, "mobile": False},
    )
    return driver


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """One Chromium for this module's browser tests (skips, saying why, where there is none)."""
    reason = chromium_missing()
    if reason:
        pytest.skip(f"browser tests skipped: {reason}")
    profile = tempfile.mkdtemp(prefix="explorer-chromium-")
    driver = start_chromium(profile)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, html: Path, fragment: str = "") -> None:
    """Load the page from the file system and wait until it has rendered."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")
    driver.get_log("browser")  # drop what an earlier page logged
    driver.get(html.resolve().as_uri() + fragment)
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.body.dataset.ready === 'true'")
    )


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def press(driver, key: str) -> None:
    """A key on the page itself (not in a form control, which would take it natively)."""
    from selenium.webdriver.common.action_chains import ActionChains

    driver.execute_script("document.activeElement && document.activeElement.blur()")
    ActionChains(driver).send_keys(key).perform()


def shown(driver, sign: str) -> list[tuple[int, np.ndarray]]:
    """The (training row, pixels) of each influencer tile of ``sign`` (positive, negative)."""
    from selenium.webdriver.common.by import By

    tiles = driver.find_elements(By.CSS_SELECTOR, f"#{sign} .tile img")
    return [(int(t.get_attribute("data-row")), decode_uri(t.get_attribute("src"))) for t in tiles]


def select(driver, control: str, option: str) -> None:
    """Choose the ``option`` (a CSS selector) of the ``control`` selector, as a user would."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    value = driver.find_element(By.CSS_SELECTOR, f"#{control} {option}").get_attribute("value")
    Select(driver.find_element(By.ID, control)).select_by_value(value)


def state(driver) -> dict[str, str]:
    return driver.execute_script(
        "const s = document.getElementById('influencers').dataset;"
        "return {target: s.target, step: s.step, method: s.method};"
    )


def check_influencers(
    driver, scores: np.ndarray, row: int, g: int, k: int, images: np.ndarray
) -> list[int]:
    """The tiles shown are scores.npy's top k (positive: highest first; negative: lowest
    first) of score row ``row`` at grid column ``g``, and show those training images."""
    order = {"positive": np.argsort(-scores[row, g], kind="stable")[:k],
             "negative": np.argsort(scores[row, g], kind="stable")[:k]}  # fmt: skip
    rows = []
    for sign, want in order.items():
        tiles = shown(driver, sign)
        got = [r for r, _ in tiles]
        # ties may order equal scores either way: compare the scores, then the rows
        np.testing.assert_array_equal(
            scores[row, g, got], scores[row, g, want], err_msg=f"{sign} influencers at column {g}"
        )
        assert got == want.tolist(), f"{sign} at column {g}: shown {got}, scores.npy {want}"
        for r, pixels in tiles:
            stored = images[r]
            np.testing.assert_array_equal(
                pixels, stored[0] if stored.shape[0] == 1 else stored.transpose(1, 2, 0)
            )
        rows += got
    return rows


def drive_page(
    driver,
    html: Path,
    score_dirs: dict[str, Path],
    train_path: Path,
    targets: Sequence[int],
    k: int,
    screenshots: Sequence[Path],
) -> None:
    """The browser check: no console errors; for each of ``targets`` (global ids), stepping
    with the keyboard through every grid step shows scores.npy's top k of the first method;
    switching to the second method with its selector changes them to its top k; a screenshot
    per target (at its middle step, second method)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    first, second = list(score_dirs)[:2]
    values = {m: np.load(Path(d) / "scores.npy", mmap_mode="r") for m, d in score_dirs.items()}
    index = pd.read_csv(Path(score_dirs[first]) / "index.csv")
    grid = [int(s) for s in load_json(Path(score_dirs[first]) / "meta.json")["grid"]]
    with np.load(train_path) as split:
        images = split["images"]
    open_page(driver, html)
    assert console_errors(driver) == [], "the page logged errors on load"
    for tid, screenshot in zip(targets, screenshots, strict=True):
        row = score_row(index, tid)
        select(driver, "target", f"option[data-id='{tid}']")
        select(driver, "method", f"option[data-name='{first}']")
        press(driver, Keys.HOME)
        by_method = {}
        for g, step in enumerate(grid):
            assert state(driver) == {"target": str(tid), "step": str(step), "method": first}
            by_method[g] = check_influencers(driver, values[first], row, g, k, images)
            if g + 1 < len(grid):
                press(driver, Keys.ARROW_RIGHT)
        middle = len(grid) // 2
        driver.find_element(By.CSS_SELECTOR, f"#step-buttons button[data-index='{middle}']").click()
        assert state(driver)["step"] == str(grid[middle])
        select(driver, "method", f"option[data-name='{second}']")
        assert state(driver) == {"target": str(tid), "step": str(grid[middle]), "method": second}
        switched = check_influencers(driver, values[second], row, middle, k, images)
        assert switched != by_method[middle], f"switching to {second} left the influencers"
        driver.save_screenshot(str(screenshot))
        assert Image.open(screenshot).size == LAPTOP
    assert console_errors(driver) == [], "the page logged errors while driven"


def test_page_in_chromium_shows_the_score_files_top_influencers(browser, tiny, tmp_path) -> None:
    html, run, _ = tiny
    shots = [tmp_path / "generated.png", tmp_path / "validation.png"]
    drive_page(browser, html, run["score_dirs"], run["train_path"], [0, 3], TOP_K, shots)
    assert all(p.stat().st_size > 0 for p in shots)


def test_browser_check_catches_influencers_off_by_one_step(browser, tiny, tmp_path) -> None:
    """The check is not vacuous: a page whose influencers lag one step behind fails it."""
    _, run, data = tiny
    shifted = dict(data, top={m: [per[-1:] + per[:-1] for per in targets]
                              for m, targets in data["top"].items()})  # fmt: skip
    html = tmp_path / "off_by_one.html"
    save_page(html, render_page(shifted))
    with pytest.raises(AssertionError, match="influencers at column"):
        drive_page(browser, html, run["score_dirs"], run["train_path"], [0], TOP_K,
                   [tmp_path / "off.png"])  # fmt: skip


def test_keyboard_and_address_fragment_move_the_view(browser, tiny) -> None:
    from selenium.webdriver.common.keys import Keys

    html, _, _ = tiny
    open_page(browser, html, "#target=3&t=500&method=dtrak")
    assert state(browser) == {"target": "3", "step": "500", "method": "dtrak"}
    press(browser, Keys.ARROW_UP)
    press(browser, Keys.END)
    press(browser, "m")
    assert state(browser) == {"target": "2", "step": "0", "method": "trak"}
    assert browser.execute_script("return location.hash") == "#target=2&t=0&method=trak"
    press(browser, Keys.ARROW_RIGHT)  # past the last step: stays
    assert state(browser)["step"] == "0"
    text = browser.execute_script("return document.getElementById('lds').innerText")
    assert "ceiling" in text and "0.220" in text  # ceiling, all targets, t = 0
    # nearest-neighbour at a whole multiple: 8 px images as 96 px tiles
    assert browser.execute_script(
        "const i = document.querySelector('#positive img');"
        "return [getComputedStyle(i).imageRendering, i.clientWidth];"
    ) == ["pixelated", 96]
    assert console_errors(browser) == []


@pytest.mark.integration
def test_ci_run_page_in_chromium(browser, ci_run: Path, repo: Path, tmp_path: Path) -> None:
    """The page the ci DAG built (rule all), driven as the tiny one, at two targets."""
    from stepattr.workflow.configs import load_config

    outdir = ci_run
    cfg = load_config([repo / "config" / "ci.yaml"])
    html = outdir / "explorer" / "index.html"
    assert html.stat().st_size > 0
    score_dirs = {m: outdir / "scores" / m for m in ("trak", "dtrak")}
    train = outdir / "data" / cfg["dataset"]["name"] / "train.npz"
    first_validation = cfg["sampling"]["num_targets"]
    shots = [tmp_path / "ci_generated.png", tmp_path / "ci_validation.png"]
    drive_page(browser, html, score_dirs, train, [1, first_validation],
               cfg["explorer"]["top_k"], shots)  # fmt: skip
