"""Helpers the tests share: accounts, the CLI, Dash callback posts, the live server and the browser."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.services import free_port, stop_process

REPO = Path(__file__).resolve().parent.parent
# One account per role in the test workspace.
ACCOUNTS = {"viewer": "test-viewer", "reviewer": "test-reviewer", "admin": "test-admin"}
PASSWORD = "correct horse battery"


def add_test_accounts(root: Path) -> None:
    from core.auth.users import add_user, find_user
    from core.workspace import open_workspace

    ws = open_workspace(root)
    for role, username in ACCOUNTS.items():
        if find_user(ws.store, username) is None:
            add_user(ws.store, username, PASSWORD, role)
    ws.store.dispose()


def copy_demo(demo_workspace: Path, dest: Path, slides: tuple[str, ...] = (), keep_cache: bool = True) -> Path:
    """A copy of the demo workspace holding only the files of ``slides`` (the other slides stay in its case store),
    with or without its cache."""
    import shutil

    keep = {f"{s}.tiff" for s in slides}
    shutil.copytree(demo_workspace, dest,
                    ignore=lambda d, names: [n for n in names if n.endswith(".tiff") and n not in keep or n == "cache" and not keep_cache])
    return dest


# The share of the perfect patch classifier's Dice (below) a heatmap must reach on the demo's held-out slides: the
# demo's patch CNN reaches 0.68-0.72 of its mean Dice and 0.78-0.79 of its pooled Dice, broken pipelines 0.61 and
# 0.69 or less (tests/test_heatmaps.py names them).
HEATMAP_DICE_OF_BOUND = 0.64


def perfect_patch_tumour_map(heat, true_cells, method: str = "overlap"):
    """The tumour map of a perfect patch classifier, through the heatmap's own patches and reconstruction ("overlap" or
    "bilinear"): a patch scores 1 when at least half of its tissue cells are tumour in the ground truth (``true_cells``,
    on the heatmap's cell grid), else 0, the majority label the demo's patch CNN learns. No classifier of these patches
    maps tumour finer than this: the bound a heatmap's agreement with the ground truth is judged against."""
    import numpy as np

    from core.heatmaps.reconstruct import reconstruct_bilinear, reconstruct_overlap_mean
    from core.slides.grid import CELLS_PER_PATCH as k

    shares = []
    for r, c in heat.cell_index:
        tissue = heat.tissue[r : r + k, c : c + k]
        shares.append(true_cells[r : r + k, c : c + k][tissue].mean() if tissue.any() else 0.0)
    scores = (np.array(shares) >= 0.5).astype(np.float32)[:, None]
    if method == "overlap":
        return reconstruct_overlap_mean(scores, heat.cell_index, k, heat.cell_shape)[0]
    return reconstruct_bilinear(scores, heat.cell_index, k, heat.stride_cells, heat.cell_shape)[0]


def run_cli(*args: str, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess:
    """``run_dashboard.py`` with these arguments, as a user runs it."""
    return subprocess.run([sys.executable, str(REPO / "run_dashboard.py"), *args], input=input, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def assert_one_line_error(result: subprocess.CompletedProcess, expected: str) -> None:
    """The command failed as a user error should: exit code 2 and one ``error: …`` line naming ``expected``."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in result.stderr


def callback_dependency(app, fragment: str) -> dict:
    """The Dash app's callback whose output key contains ``fragment``, as /_dash-dependencies describes it."""
    key = next(k for k in app.callback_map if fragment in k)
    return {"output": key, "inputs": app.callback_map[key]["inputs"], "state": app.callback_map[key]["state"]}


def post_callback(client, app, fragment: str, values: dict, changed: list[str], wildcards: dict | None = None):
    """Post the callback request a browser would send (see ``tests.load.reviewers.callback_body``) with a Flask test client."""
    from tests.load.reviewers import callback_body

    return client.post("/_dash-update-component", json=callback_body(callback_dependency(app, fragment), values, changed, wildcards))


def sign_in(client, role: str = "reviewer", base: str = ""):
    """Sign a Flask test client or a requests.Session in; return the response to the form post."""
    response = client.post(f"{base}/login", data={"username": ACCOUNTS[role], "password": PASSWORD, "next": "/"},
                           **({"allow_redirects": False} if base else {}))
    assert response.status_code == 302, f"sign-in as {role} failed: {response.status_code}"
    return response


class LiveServer:
    def __init__(self, workspace: Path, *args: str) -> None:
        """``args``: more options of ``run_dashboard.py serve`` (e.g. ``--trusted-proxy 127.0.0.1``)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "run_dashboard.py"), "--workspace", str(workspace), "--port", str(self.port), *args],
            cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                if requests.get(self.url + "/login", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server did not answer within 90 s: {self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        stop_process(self.process)


def chromium_driver(width: int = 1400, height: int = 1000):
    """Headless Chromium with downloads going to its own folder (``driver.download_dir``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from tests.system_packages import ensure_chromium

    chromium, chromedriver = ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={width},{height}", f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        options.add_argument(flag)
    downloads = tempfile.mkdtemp(prefix="downloads-")
    options.add_experimental_option("prefs", {"download.default_directory": downloads, "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
    driver.download_dir = Path(downloads)  # where exports from the app land
    driver.set_page_load_timeout(60)
    return driver


def sign_in_browser(driver, base: str, role: str = "reviewer") -> None:
    """Sign the browser in to the server at ``base`` through its sign-in form."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}/login")
    driver.find_element("id", "username").send_keys(ACCOUNTS[role])
    driver.find_element("id", "password").send_keys(PASSWORD)
    driver.find_element("id", "login-submit").click()
    try:  # the form posts and redirects: wait for it rather than read the address at once
        WebDriverWait(driver, 30).until(lambda d: "/login" not in d.current_url)
    except TimeoutException:
        raise AssertionError(f"the test browser could not sign in to {base}") from None


def click_plot_point(browser, graph_id: str, index: int) -> None:
    """Click point ``index`` of a Plotly graph's first trace the way a person does: approach it, rest, click. Plotly
    picks the clicked point from the last hover, and a single jump onto the marker can go unhovered on a busy machine."""
    from selenium.webdriver import ActionChains
    from selenium.webdriver.common.by import By

    point = browser.find_elements(By.CSS_SELECTOR, f"#{graph_id} .scatterlayer .trace:first-child .points path")[index]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", point)
    ActionChains(browser).move_to_element_with_offset(point, -25, 0).pause(0.3).move_to_element(point).pause(0.3).click().perform()


def element_text(browser, element_id: str) -> str:
    """The text of the element with this id; empty while it is not on the page, or while a re-render replaces it
    between finding and reading (the caller's wait then simply asks again)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    found = browser.find_elements(By.ID, element_id)
    try:
        return found[0].text if found else ""
    except StaleElementReferenceException:
        return ""


def js_click(browser, element) -> None:
    """A click event on the element itself (or the one with this id): the page may still be shifting as panels render,
    and a pointer click aimed at a moving target lands elsewhere."""
    from selenium.webdriver.common.by import By

    if isinstance(element, str):
        element = browser.find_element(By.ID, element)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click()", element)


def headless_chromium(window: str = "1366,768"):
    """A headless Chromium of its own (for a server other than the session's demo); the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from tests.system_packages import ensure_chromium

    chromium, chromedriver = ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={window}",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(60)
    return driver


# The cell texts of one column of an AG Grid, in row order, read in one script call (a re-render cannot leave stale
# element handles); rows still loading (no text in any of their cells) are left out.
GRID_COLUMN = """
const rows = {};
for (const cell of document.querySelectorAll(`#${arguments[0]} .ag-row .ag-cell[col-id='${arguments[1]}']`)) {
    const row = cell.closest(".ag-row");
    if (row.classList.contains("ag-row-loading") || !row.innerText.trim()) { continue; }
    rows[Number(row.getAttribute("row-index"))] = cell.innerText.trim();
}
return Object.keys(rows).map(Number).sort((a, b) => a - b).map(k => rows[k]);
"""


def grid_column(browser, grid_id: str, column: str) -> list[str]:
    return browser.execute_script(GRID_COLUMN, grid_id, column)


def grid_page_button(browser, grid_id: str, which: str) -> None:
    """Clicks a grid's paging button: "First Page", "Previous Page", "Next Page" or "Last Page"."""
    from selenium.webdriver.common.by import By

    js_click(browser, browser.find_element(By.CSS_SELECTOR, f"#{grid_id} .ag-paging-button[aria-label='{which}']"))


def grid_sort(browser, grid_id: str, column: str) -> None:
    """Clicks a column's heading (ascending, descending, unsorted in turn)."""
    from selenium.webdriver.common.by import By

    js_click(browser, browser.find_element(By.CSS_SELECTOR, f"#{grid_id} .ag-header-cell[col-id='{column}'] .ag-header-cell-label"))


def grid_cell(browser, grid_id: str, key_column: str, key: str, column: str):
    """The ``column`` cell of the AG Grid row whose ``key_column`` cell reads ``key``."""
    from selenium.webdriver.common.by import By

    for row in browser.find_elements(By.CSS_SELECTOR, f"#{grid_id} .ag-row"):
        if row.find_element(By.CSS_SELECTOR, f".ag-cell[col-id='{key_column}']").text.strip() == key:
            return row.find_element(By.CSS_SELECTOR, f".ag-cell[col-id='{column}']")
    raise AssertionError(f"no row of {grid_id} with {key_column} {key!r}")


def edit_grid_cell(browser, grid_id: str, key_column: str, key: str, column: str, value: str) -> None:
    """Type ``value`` into a cell of an AG Grid as a person does: a pointer click opens the cell's editor (the grid
    edits on one click; it answers the pointer, not a script's click event), the old value is selected and typed over,
    Enter commits. A click that lands while the page is still shifting is tried again."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(lambda b: not b.find_elements(By.CSS_SELECTOR, f"#{grid_id} .ag-cell input"))  # the last edit is in
    for _attempt in range(3):
        cell = grid_cell(browser, grid_id, key_column, key, column)
        row = browser.execute_script("return arguments[0].closest('.ag-row').getAttribute('row-index')", cell)
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", cell)
        ActionChains(browser).move_to_element(cell).click().perform()
        editor_css = f"#{grid_id} .ag-row[row-index='{row}'] .ag-cell[col-id='{column}'] input"
        try:
            editor = WebDriverWait(browser, 5).until(lambda b, css=editor_css: b.find_elements(By.CSS_SELECTOR, css))[0]
            break
        except TimeoutException:
            continue
    else:
        raise AssertionError(f"no editor opened on {grid_id}'s {column} cell for {key!r}")
    editor.send_keys(Keys.CONTROL, "a")
    editor.send_keys(Keys.BACKSPACE, value, Keys.ENTER)
