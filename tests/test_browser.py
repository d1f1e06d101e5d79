"""Drive the running Streamlit app in headless Chromium: every page, one real action per page.

The module starts `streamlit run app.py` on a free loopback port with PAINTAE_CHECKPOINTS in a
temporary folder, then uses Playwright against it. Full-page screenshots of every page go to
test-artifacts/screenshots/, and the server log goes to test-artifacts/browser-server.log.

Set PAINTAE_BROWSER to use another Chromium binary than /usr/bin/chromium. Playwright's own
browser download (`playwright install`) is never used.
"""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from paintae import checkpoints, config, data
from paintae.models import build_model

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the python package playwright is not importable: pip install playwright",
)
Browser, Page, expect = sync_api.Browser, sync_api.Page, sync_api.expect

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Bounds in milliseconds (Playwright's unit) unless named _S. The CPU may be slow and shared, so
# the bounds are generous: a model step or a first page run that imports torch can take a minute.
SERVER_START_S = 90
PAGE_LOAD = 90_000
MODEL_STEP = 120_000
UI_ACTION = 30_000
expect.set_options(timeout=UI_ACTION)


# -- server ------------------------------------------------------------------------------------


@dataclass
class AppServer:
    url: str
    checkpoint_dir: Path
    image_dir: Path
    log_path: Path

    def log_tail(self, chars: int = 6000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-chars:]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, log_path: Path) -> None:
    """Poll the health endpoint until it returns "ok". Fail with the log on exit or timeout."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = log_path.read_text(errors="replace")
            pytest.fail(f"streamlit exited with code {process.returncode} on start:\n{log}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().decode().strip() == "ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    log = log_path.read_text(errors="replace")
    pytest.fail(f"{url}/_stcore/health did not return ok within {SERVER_START_S} s:\n{log}")


def stop_server(process: subprocess.Popen) -> None:
    """Terminate the server's process group, then kill it if it is still alive after 10 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = os.environ.get("PAINTAE_BROWSER", "").strip() or DEFAULT_CHROMIUM
    if not Path(path).is_file():
        pytest.skip(f"no Chromium at {path}: install chromium or set PAINTAE_BROWSER")
    return path


@pytest.fixture(scope="module")
def app_server(chromium_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """Run the app on a free port for the whole module, and always end its process group."""
    base = tmp_path_factory.mktemp("browser")
    checkpoint_dir = base / "checkpoints"
    image_dir = base / "images"
    write_images(image_dir)
    env = {**os.environ, config.CHECKPOINTS_ENV: str(checkpoint_dir), "PYTHONUNBUFFERED": "1"}
    with pytest.MonkeyPatch.context() as patch:
        # list_checkpoints must search the same folders as the server.
        patch.setenv(config.CHECKPOINTS_ENV, str(checkpoint_dir))
        write_missing_checkpoints(checkpoint_dir)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = base / "server.log"
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_healthy(url, process, log_path)
        yield AppServer(url, checkpoint_dir, image_dir, log_path)
    finally:
        stop_server(process)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "browser-server.log").write_bytes(log_path.read_bytes())


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def app(browser: Browser, app_server: AppServer) -> AppServer:
    """The server after one visit to the home page, so that page URLs resolve through app.py.

    NOTE: Streamlit 1.67 runs the sessions of a fresh server in its legacy pages/ directory mode
    until app.py has called st.navigation once. A first visit to /train therefore runs
    pages/train.py alone, with file names in the sidebar, until someone opens the home page.
    """
    tab = browser.new_page()
    try:
        tab.goto(app_server.url)
        nav = tab.get_by_test_id("stSidebarNav")
        expect(nav.get_by_role("link", name="Home", exact=True)).to_be_visible(timeout=PAGE_LOAD)
    finally:
        tab.close()
    return app_server


@pytest.fixture
def page(browser: Browser, app: AppServer, request: pytest.FixtureRequest) -> Iterator[Page]:
    """Open a fresh browser context per test. A failure saves a screenshot and prints the log."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(UI_ACTION)
    failed_before = request.session.testsfailed
    try:
        yield tab
    finally:
        if request.session.testsfailed > failed_before:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=SCREENSHOTS / f"FAILED-{request.node.name}.png", full_page=True)
            print(f"--- streamlit server log (last part) ---\n{app.log_tail()}")
        context.close()


# -- test data ---------------------------------------------------------------------------------


def write_images(folder: Path) -> None:
    """Write smooth-N.png (calm colour gradients) and noisy-N.png (random pixels), 64 x 48."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :64]
    for index in range(6):
        smooth = np.stack([xx * 3 + 10 * index, yy * 4, 128 + 0 * xx], axis=-1)
        Image.fromarray(np.clip(smooth, 0, 255).astype(np.uint8)).save(
            folder / f"smooth-{index}.png"
        )
        noisy = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
        Image.fromarray(noisy).save(folder / f"noisy-{index}.png")


def write_missing_checkpoints(folder: Path) -> None:
    """Save tiny untrained denoising and anomaly checkpoints unless the repository ships one.

    $PAINTAE_CHECKPOINTS must point at `folder` while this runs.
    """
    shipped = checkpoints.list_checkpoints([config.repo_checkpoint_dir()])
    families = {info.family for info in shipped}
    torch.manual_seed(0)
    if "denoising" not in families:
        model = build_model("conv-ref", in_channels=3, image_size=32, latent=4)
        metadata = {
            "family": "denoising",
            "train_config": {"epochs": 1, "batch_size": 8, "noise_kind": "gaussian"},
            "data": {"dataset": "paintings", "folder": "browser-test", "image_size": 32},
            "test_metrics": {"test_mse": 0.02, "psnr_noisy": 14.0, "psnr_denoised": 18.0},
        }
        checkpoints.save_checkpoint(folder / "browser-denoiser", model, metadata)
    if "anomaly" not in families:
        model = build_model("conv-ref", in_channels=3, image_size=32, latent=4)
        metadata = {
            "family": "anomaly",
            "train_config": {"epochs": 1, "batch_size": 8},
            "data": {"dataset": "paintings", "folder": "browser-test", "image_size": 32},
            "test_metrics": {"test_mse": 0.02},
            "anomaly": {"score": "mse", "mean": 0.01, "std": 0.005, "k": 1.0, "threshold": 0.015},
        }
        checkpoints.save_checkpoint(folder / "browser-anomaly", model, metadata)


# -- page helpers ------------------------------------------------------------------------------


def open_page(page: Page, server: AppServer, path: str, title: str) -> None:
    """Open `path` and wait until navigation and the page title are drawn."""
    page.goto(f"{server.url}/{path}")
    # Until the first script run ends, the sidebar may list raw file names instead of titles.
    nav = page.get_by_test_id("stSidebarNav")
    expect(nav.get_by_role("link", name="Home", exact=True)).to_be_visible(timeout=PAGE_LOAD)
    expect(page.locator("h1").filter(has_text=title)).to_be_visible(timeout=PAGE_LOAD)


def widget(page: Page, key: str):
    """Return the element container of the widget with Streamlit key `key`."""
    return page.locator(f".st-key-{key}")


def metric(page: Page, label: str):
    """Return the st.metric container whose label is exactly `label`."""
    label_element = page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
    return page.get_by_test_id("stMetric").filter(has=label_element)


def metric_value(page: Page, label: str):
    """Return the value element of the st.metric whose label is exactly `label`."""
    return metric(page, label).get_by_test_id("stMetricValue")


def pick_radio(page: Page, key: str, option: str) -> None:
    widget(page, key).get_by_text(option, exact=True).click()
    expect(widget(page, key).get_by_role("radio", name=option, exact=True)).to_be_checked()


def set_number(page: Page, key: str, value: int) -> None:
    field = widget(page, key).locator("input")
    field.fill(str(value))
    field.press("Enter")
    expect(field).to_have_value(str(value))


def move_slider(page: Page, key: str, arrow: str, target: str, max_presses: int = 20) -> None:
    """Press `arrow` on the focused slider thumb until its shown value is `target`."""
    thumb = widget(page, key).get_by_role("slider")
    shown = widget(page, key).get_by_test_id("stSliderThumbValue")
    thumb.focus()
    for _ in range(max_presses):
        if shown.inner_text().strip() == target:
            break
        thumb.press(arrow)
    expect(shown).to_have_text(target)


def upload(page: Page, key: str, files: list[Path]) -> None:
    widget(page, key).locator("input[type=file]").set_input_files(files)
    for file in files:
        expect(widget(page, key).get_by_text(file.name)).to_be_visible()


def expect_no_errors(page: Page) -> None:
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot; the viewport grows first because Streamlit scrolls inside."""
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll("
        "'[data-testid=stMain], [data-testid=stSidebarContent]')].map(e => e.scrollHeight), 0)"
    )
    page.set_viewport_size({"width": 1400, "height": int(min(max(height + 100, 1000), 8000))})
    page.wait_for_timeout(300)  # let the charts redraw at the new size
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path


# Points in all traces of the loss chart (per-step and per-epoch losses), or -1 before it is drawn.
# The trainer logs every 10th step and any step after a 1 s gap, so a short fast run may plot one
# step point, but it plots one point per epoch.
LOSS_POINTS_JS = """() => {
  const plot = document.querySelector('.st-key-train_loss_chart .js-plotly-plot');
  if (!plot || !plot.data) return -1;
  return plot.data.reduce((sum, trace) => sum + trace.x.length, 0);
}"""


# True once the loss chart has more than `first` points or the Status metric shows an end state.
GROWN_OR_ENDED_JS = """(first) => {
  const points = (LOSS_POINTS)();
  const status = [...document.querySelectorAll('[data-testid=stMetric]')]
    .filter(m => m.querySelector('[data-testid=stMetricLabel]').innerText.trim() === 'Status')
    .map(m => m.querySelector('[data-testid=stMetricValue]').innerText.trim());
  return points > first || ['finished', 'stopped', 'failed'].includes(status[0]);
}""".replace("LOSS_POINTS", LOSS_POINTS_JS)


# -- tests -------------------------------------------------------------------------------------


def test_home_lists_pages_and_checkpoints(page: Page, app: AppServer) -> None:
    open_page(page, app, "", "paintae")
    nav = page.get_by_test_id("stSidebarNav")
    for title in ("Home", "Train", "Denoise", "Anomaly", "Benchmarks"):
        expect(nav.get_by_role("link", name=title, exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="What was found")).to_be_visible()
    expect(metric_value(page, "Checkpoints")).not_to_have_text("0")
    expected = "found" if data.fashion_mnist_available(config.data_root()) else "missing"
    expect(metric_value(page, "Fashion-MNIST")).to_have_text(expected)
    expect_no_errors(page)
    screenshot(page, "home")


def test_train_loss_curve_grows(page: Page, app: AppServer) -> None:
    open_page(page, app, "train", "Train")
    # Enough steps that the chart is drawn while training runs on a fast CPU. The test presses
    # Stop once the curve has grown, so a slow CPU does not have to finish every epoch.
    if data.fashion_mnist_available(config.data_root()):
        # The default family (reconstruction) and model (mlp), with 750 steps per epoch.
        set_number(page, "train_limit", 48_000)
        epochs = 5
    else:
        # No Fashion-MNIST: the MLP on 12 uploaded generated paintings (32 x 32), one step per
        # epoch because the 10 training images fit in one batch.
        pick_radio(page, "train_dataset", "Uploaded paintings")
        upload(page, "train_upload", sorted(app.image_dir.glob("*.png")))
        epochs = 1000
    set_number(page, "train_epochs", epochs)
    expect_no_errors(page)

    page.get_by_role("button", name="Start training").click()
    expect(metric_value(page, "Epoch")).to_contain_text(f"/ {epochs}", timeout=PAGE_LOAD)
    last_loss = metric_value(page, "Last loss")
    expect(last_loss).not_to_have_text("-", timeout=MODEL_STEP)
    # Plotly is loaded lazily by the browser, so the chart can appear seconds after the metrics.
    page.wait_for_function(f"() => ({LOSS_POINTS_JS})() >= 1", timeout=MODEL_STEP)
    first_points = page.evaluate(LOSS_POINTS_JS)

    # The curve grows while training runs. If the job already ended, it shows its final points.
    page.wait_for_function(GROWN_OR_ENDED_JS, arg=first_points, timeout=MODEL_STEP)
    status = metric_value(page, "Status")
    stop = widget(page, "train_stop").get_by_role("button")
    if stop.is_enabled():
        stop.click()
    # The job evaluates on the test split after a stop too, so both end states show results.
    expect(status).to_have_text(re.compile(r"^(finished|stopped)$"), timeout=MODEL_STEP)
    final_points = page.evaluate(LOSS_POINTS_JS)
    assert final_points >= 2, f"the loss curve has {final_points} point(s) after training"
    assert final_points >= first_points
    expect(page.get_by_role("heading", name="Test results")).to_be_visible(timeout=MODEL_STEP)
    expect(metric_value(page, "Test MSE")).to_be_visible()
    expect_no_errors(page)
    screenshot(page, "train")


def test_denoise_slider_changes_psnr(page: Page, app: AppServer) -> None:
    open_page(page, app, "denoise", "Denoise")
    pick_radio(page, "denoise_source", "Upload")
    upload(page, "denoise_upload", [app.image_dir / "smooth-0.png"])
    noisy = metric_value(page, "PSNR noisy (dB)")
    denoised = metric_value(page, "PSNR denoised (dB)")
    expect(denoised).to_be_visible(timeout=MODEL_STEP)
    # An untrained tiny denoiser may return nearly the same image for any input, so the check
    # is on the noisy PSNR and on the gain shown as the delta of "PSNR denoised (dB)".
    gain = metric(page, "PSNR denoised (dB)").get_by_test_id("stMetricDelta")
    noisy_before = float(noisy.inner_text())
    gain_before = gain.inner_text()

    move_slider(page, "denoise_level", "ArrowRight", "0.30")
    expect(noisy).not_to_have_text(f"{noisy_before:.2f}", timeout=MODEL_STEP)
    noisy_after = float(noisy.inner_text())
    assert noisy_after < noisy_before, "more noise must lower the PSNR of the noisy image"
    expect(gain).not_to_have_text(gain_before)
    expect_no_errors(page)
    screenshot(page, "denoise")


def test_anomaly_ranks_uploads(page: Page, app: AppServer) -> None:
    open_page(page, app, "anomaly", "Anomaly")
    pick_radio(page, "anomaly_source", "Upload files")
    files = [app.image_dir / "smooth-1.png", app.image_dir / "noisy-1.png"]
    upload(page, "anomaly_upload_files", files)
    expect(metric_value(page, "Paintings scored")).to_have_text("2", timeout=MODEL_STEP)
    expect(page.get_by_role("heading", name="Ranking")).to_be_visible()
    for rank in (1, 2):
        caption = page.get_by_test_id("stImageCaption").filter(has_text=f"#{rank} ")
        expect(caption.first).to_be_visible()

    with page.expect_download() as download_info:
        widget(page, "anomaly_csv").get_by_role("button").click()
    rows = list(csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text())))
    assert [row["rank"] for row in rows] == ["1", "2"]
    assert sorted(row["name"] for row in rows) == sorted(f.name for f in files)
    captions = page.get_by_test_id("stImageCaption").all_inner_texts()
    for row in rows:
        assert f"#{row['rank']} {row['name']}" in captions, captions
    expect_no_errors(page)
    screenshot(page, "anomaly")


def test_benchmarks_page_renders(page: Page, app: AppServer) -> None:
    open_page(page, app, "benchmarks", "Benchmarks")
    recorded = (REPO / "benchmarks" / "results.json").is_file() or (
        REPO / "docs" / "benchmarks.md"
    ).is_file()
    if recorded:
        expect(page.get_by_test_id("stMarkdown").first).to_be_visible()
    else:
        expect(page.get_by_text("No benchmarks recorded yet", exact=False)).to_be_visible()
    expect_no_errors(page)
    screenshot(page, "benchmarks")
