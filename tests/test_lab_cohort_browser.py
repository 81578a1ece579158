"""A workspace built only through the command line (import, fit, models add, predict, check) from CSVs and a slide folder
of several formats (generic TIFF, SVS-like TIFF, a DICOM-WSI series, a unicode-named file, an unreadable file), served and
looked at in headless Chromium: cohort page, case page, patient page with SHAP and a what-if on the fitted model, the
Models page with the added model, and the slide page of every readable slide; the unreadable file is listed by check and
absent from the app."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
import torch
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from core.models.sequence import VisitSequenceNet
from tests.cohort_files import FEATURES, write_csv, write_dicom_wsi, write_generic_tiff, write_labelled_cohort, write_svs_like, write_unreadable
from tests.helpers import LiveServer, add_test_accounts, edit_grid_cell, element_text, headless_chromium, js_click, run_cli, sign_in_browser

pytestmark = pytest.mark.browser

READABLE = {"L00000_HE": "L00000_HE.tiff", "L00001_HE": "scanner/L00001_HE.svs", "L00002_Färbung-ü": "L00002_Färbung-ü.tiff",
            "L00004_HE": "dicom/L00004_HE/ (DICOM-WSI series)"}


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lab")
    files = write_labelled_cohort(folder, 120)
    slides = folder / "slides"
    write_generic_tiff(slides / "L00000_HE.tiff", seed=1)
    write_svs_like(slides / "scanner" / "L00001_HE.svs", seed=2)
    write_generic_tiff(slides / "L00002_Färbung-ü.tiff", size=512, seed=3)
    write_unreadable(slides / "L00003_broken.svs")
    write_dicom_wsi(slides / "dicom" / "L00004_HE", seed=4)
    # A lab's own trained LSTM, registered with models add beside the fitted GRU.
    torch.manual_seed(0)
    torch.save(VisitSequenceNet(n_numeric=2, category_sizes=[2], cell="lstm", hidden=8, elapsed_time=True).state_dict(), folder / "lab_lstm.pt")
    (folder / "params.toml").write_text('n_numeric = 2\ncategory_sizes = [2]\ncell = "lstm"\nhidden = 8\nelapsed_time = true\n')
    (folder / "input.toml").write_text(f"features = {FEATURES!r}\nfeature_means = [75.0, 9.0]\nfeature_stds = [12.0, 2.0]\n"
                                       'elapsed_time = true\nelapsed_scale_days = 30.0\n[categorical]\nonset_type = ["spinal", "bulbar"]\n')
    reports = write_csv(folder / "reports.csv", ["report_id", "patient_id", "day", "label", "text"],
                        [["L00000-R1", "L00000", "10", "1", "PROSTATE, NEEDLE BIOPSY\nAdenocarcinoma, Gleason score 4+4=8."]])
    root = folder / "ws"
    steps = [
        ["import", "--workspace", str(root), "--patients", str(files["patients"]), "--visits", str(files["visits"]), "--reports", str(reports),
         "--slides", str(slides), "--skip-invalid"],
        ["fit", "--workspace", str(root), "--task", "sequence", "--id", "lab-gru", "--sidecar", str(files["sidecar"]), "--max-epochs", "15",
         "--bootstrap", "200", "--class-names", "no NIV,NIV within 90 days"],
        ["models", "add", "--workspace", str(root), "--id", "lab-lstm", "--name", "Lab LSTM", "--task", "sequence", "--architecture",
         "visit_sequence_net", "--weights", str(folder / "lab_lstm.pt"), "--params", str(folder / "params.toml"), "--input",
         str(folder / "input.toml"), "--class-names", "no NIV,NIV within 90 days"],
        ["predict", "--workspace", str(root)],
    ]
    for args in steps:
        result = run_cli(*args, timeout=300)
        assert result.returncode == 0, result.stderr
    add_test_accounts(root)
    return root


@pytest.fixture(scope="module")
def lab_browser(lab_root):
    server = LiveServer(lab_root)
    driver = headless_chromium()
    sign_in_browser(driver, server.url)
    yield driver, server.url
    driver.quit()
    server.stop()


def _wait(browser, condition, timeout=90):
    return WebDriverWait(browser, timeout).until(condition)


def test_check_lists_the_unreadable_file(lab_root):
    result = run_cli("check", "--workspace", str(lab_root))
    assert result.returncode == 1
    assert "not imported L00003_broken.svs  OpenSlide cannot open it: Unsupported or missing image file" in result.stdout
    assert "slide " not in result.stdout  # every registered slide reads


def test_the_dicom_series_is_one_slide_with_openslides_geometry(lab_root):
    """The two level files of the DICOM-WSI folder are one slide, named after its folder, at level 0's size and µm/px."""
    from core.store.cases import slide_record
    from core.workspace import open_workspace

    ws = open_workspace(lab_root)
    try:
        with ws.store.session() as s:
            slide = slide_record(s, "L00004_HE")
            assert (slide.patient_id, slide.width, slide.height, slide.mpp) == ("L00004", 1024, 1024, 0.5)
            assert slide.file.endswith(".dcm")
    finally:
        ws.store.dispose()


def test_the_cli_built_workspace_in_a_browser(lab_browser):
    browser, url = lab_browser
    browser.get(f"{url}/")
    _wait(browser, lambda b: "L00000" in b.page_source and b.find_elements(By.CSS_SELECTOR, "#cohort-table .ag-cell"))
    assert "Something went wrong" not in browser.page_source

    browser.get(f"{url}/case/L00000")
    _wait(browser, lambda b: "Case L00000" in b.page_source and "Gleason score 4+4=8" in b.page_source)

    browser.get(f"{url}/patient/L00005")
    _wait(browser, lambda b: "Visit" in element_text(b, "visit-outcome-card"))
    _wait(browser, lambda b: b.execute_script("const g = document.querySelector('#visit-waterfall .js-plotly-plot'); return !!(g && g.data && g.data.length)"))
    stored = float(_wait(browser, lambda b: element_text(b, "visit-output")))
    edit_grid_cell(browser, "visit-edit-table", "feature", "fvc_percent", "value", "20")
    js_click(browser, "visit-edit-apply")
    _wait(browser, lambda b: element_text(b, "whatif-output"))  # drawn, with its number
    assert float(element_text(browser, "whatif-output")) != stored

    browser.get(f"{url}/models")  # the model added with models add is listed beside the fitted one
    _wait(browser, lambda b: "Lab LSTM" in b.page_source and "lab-gru" in b.page_source)
    assert "Something went wrong" not in browser.page_source

    for slide_id in READABLE:
        browser.get(f"{url}/slide/{quote(slide_id, safe='')}")
        _wait(browser, lambda b, s=slide_id: f"Slide {s}" in b.page_source and b.find_elements(By.ID, "slide-map"))
        _wait(browser, lambda b: b.execute_script(
            "return [...document.querySelectorAll('#slide-map img.leaflet-tile')].some(t => t.complete && t.naturalWidth > 0)"))
    browser.get(f"{url}/slide/L00003_broken")
    _wait(browser, lambda b: b.find_elements(By.ID, "page-content") and "L00003_broken" in b.page_source)
    assert not browser.find_elements(By.ID, "slide-map")


def test_admins_see_the_start_up_check(lab_browser):
    browser, url = lab_browser
    browser.delete_all_cookies()
    sign_in_browser(browser, url, role="admin")
    browser.get(f"{url}/admin")
    _wait(browser, lambda b: b.find_elements(By.ID, "admin-check") and "still running" not in element_text(b, "admin-check")
          or (b.refresh() and False))
    text = element_text(browser, "admin-check")
    assert text.startswith("Workspace check: 1 problem.") and "L00003_broken.svs" in text and "OpenSlide cannot open it" in text
