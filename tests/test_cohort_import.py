"""``run_dashboard.py import``: a lab's CSVs and slide folder into a workspace, one error line per bad row or file,
nothing written when any is bad, and the same files imported twice change nothing."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from run_dashboard import main
from tests.cohort_files import write_cohort, write_csv, write_generic_tiff, write_slide_folder
from tests.helpers import run_cli

pytestmark = pytest.mark.store  # the command line against a real SQLite case store

TABLES = ("patients", "visits", "reports", "slides")


def store_rows(root: Path) -> dict[str, list[tuple]]:
    """Every row of the case tables, for a store diff."""
    db = root / "cases.db"
    if not db.exists():
        return {}
    with sqlite3.connect(db) as conn:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lab")
    write_cohort(folder)
    write_slide_folder(folder / "slides")
    (folder / "slides" / "P004_broken.svs").unlink()
    (folder / "slides" / "P004_HE.tiff").unlink()  # its 72-dpi resolution is a test of its own
    return folder


def import_args(root: Path, lab: Path, *extra: str) -> list[str]:
    return ["import", "--workspace", str(root), "--patients", str(lab / "patients.csv"), "--visits", str(lab / "visits.csv"),
            "--reports", str(lab / "reports.csv"), "--slides", str(lab / "slides"), *extra]


@pytest.fixture
def imported(lab, tmp_path) -> Path:
    """A workspace holding the lab's cohort, imported once."""
    root = tmp_path / "ws"
    assert main(import_args(root, lab)) == 0
    return root


def test_import_creates_the_workspace_from_csvs_and_slides(imported, lab):
    from core.workspace import open_workspace

    ws = open_workspace(imported)
    rows = store_rows(imported)
    assert len(rows["patients"]) == 4 and len(rows["visits"]) == 10 and len(rows["reports"]) == 4
    slides = {r[0]: r for r in rows["slides"]}
    assert set(slides) == {"P001_HE", "P002_HE", "P003_Färbung-ü"}
    # id, patient, file, mpp, width, height: read by OpenSlide (the SVS-like file's MPP from its Aperio description)
    assert slides["P002_HE"][1:6] == ("P002", "scanner/P002_HE.svs", 0.25, 1024, 1024)
    assert slides["P001_HE"][3:6] == (0.5, 1024, 1024)
    assert (ws.slides_dir / "P003_Färbung-ü.tiff").resolve() == (lab / "slides" / "P003_Färbung-ü.tiff").resolve()
    # dates become days since each patient's first visit; reports are counted from it too
    with sqlite3.connect(imported / "cases.db") as conn:
        assert conn.execute("SELECT day FROM visits WHERE patient_id='P002' ORDER BY day").fetchall() == [(0.0,), (92.0,), (182.0,)]
        assert conn.execute("SELECT day FROM reports WHERE id='P001-R1'").fetchone() == (16.0,)
    assert ws.config.patient_attributes["age"].label == "Age" and ws.config.patient_attributes["age"].unit == "years"
    assert ws.config.patient_attributes["onset_type"].label == "Onset"
    ws.store.dispose()


def test_the_same_import_again_changes_nothing_and_one_cell_changes_one_row(imported, lab, tmp_path, capsys):
    before = store_rows(imported)
    capsys.readouterr()
    assert main(import_args(imported, lab)) == 0
    assert "visits: 0 new, 0 changed, 10 unchanged" in capsys.readouterr().out
    assert store_rows(imported) == before

    edited = tmp_path / "edited"
    shutil.copytree(lab, edited, ignore=shutil.ignore_patterns("slides"))
    visits = (edited / "visits.csv").read_text().splitlines()
    cells = visits[4].split(",")
    cells[2] = "55.5"  # fvc_percent of P002's second visit
    visits[4] = ",".join(cells)
    (edited / "visits.csv").write_text("\n".join(visits) + "\n")
    args = ["import", "--workspace", str(imported), "--visits", str(edited / "visits.csv")]
    assert main([*args, "--dry-run"]) == 0
    assert "visits: 0 new, 1 changed, 9 unchanged (changed: P002 day 92.0)" in capsys.readouterr().out
    assert store_rows(imported) == before
    assert main(args) == 0
    after = store_rows(imported)
    changed = [(t, r) for t in TABLES for r in after[t] if r not in before[t]]
    assert len(changed) == 1 and changed[0][0] == "visits" and json.loads(changed[0][1][3])["fvc_percent"] == 55.5
    assert sum(len(v) for v in after.values()) == sum(len(v) for v in before.values())


def bad_import(root: Path, capsys, *args: str) -> list[str]:
    """The import's exit code is 2 and its error lines (after the first, which counts them)."""
    capsys.readouterr()
    assert main(["import", "--workspace", str(root), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: nothing imported: ")
    return err[1:]


@pytest.mark.parametrize("rows, expected", [
    ([["P001", "2021-01-04", "90", "11"], ["P999", "2021-01-04", "88", "10"]],
     "visits.csv, row 3, column patient_id: unknown patient 'P999': not in the patients file or the workspace"),
    ([["P001", "2021-01-04", "ninety", "11"], ["P002", "2021-01-04", "88", "10"]],
     "visits.csv, row 2, column fvc_percent: non-numeric value 'ninety' in a column of numbers "
     "(if fvc_percent is text, declare kind = \"text\" for it in the sidecar TOML)"),
    ([["P001", "2021-01-04", "90", "11"], ["P001", "2021-04-06", "nan", "10"], ["P001", "2021-07-05", "80", "10"]],
     "visits.csv, row 3, column fvc_percent: 'nan' is not a finite number; leave the cell empty when the value is unknown"),
    ([["P001", "2021-04-06", "90", "11"], ["P001", "2021-01-04", "88", "10"]],
     "visits.csv, row 3, column date: out of order: date 2021-01-04 for patient 'P001' after 2021-04-06 on row 2; "
     "list each patient's visits in time order, one per day"),
    ([["P001", "2021-13-04", "90", "11"]],
     "visits.csv, row 2, column date: date '2021-13-04' is not a date written YYYY-MM-DD"),
])
def test_a_bad_visit_row_is_named_and_nothing_is_written(imported, tmp_path, capsys, rows, expected):
    before = store_rows(imported)
    visits = write_csv(tmp_path / "visits.csv", ["patient_id", "date", "fvc_percent", "alsfrs_respiratory"], rows)
    assert bad_import(imported, capsys, "--visits", str(visits)) == [expected]
    assert store_rows(imported) == before


def test_ids_are_checked_and_the_allowed_characters_named(imported, tmp_path, capsys):
    before = store_rows(imported)
    patients = write_csv(tmp_path / "patients.csv", ["patient_id", "age"], [["P 010", "50"], ["P011", "51"], ["P011", "52"]])
    visits = write_csv(tmp_path / "visits.csv", ["patient_id", "day", "fvc_percent"], [["P011", "0", "80"]])
    lines = bad_import(imported, capsys, "--patients", str(patients), "--visits", str(visits))
    assert lines == [
        "patients.csv, row 2, column patient_id: id 'P 010' is not allowed; ids are 1 to 64 characters: letters (any alphabet), "
        "digits, '_', '-' and '.', starting with a letter or digit (no spaces)",
        "patients.csv, row 4, column patient_id: patient 'P011' is also on row 3",
    ]
    assert store_rows(imported) == before


def test_a_report_for_an_unknown_patient_and_an_empty_text(imported, tmp_path, capsys):
    before = store_rows(imported)
    reports = write_csv(tmp_path / "reports.csv", ["report_id", "patient_id", "day", "text"],
                        [["R-9", "P404", "3", "Benign."], ["R-10", "P001", "3", ""]])
    assert bad_import(imported, capsys, "--reports", str(reports)) == [
        "reports.csv, row 2, column patient_id: unknown patient 'P404': not in the patients file or the workspace",
        "reports.csv, row 3, column text: the report text is empty"]
    assert store_rows(imported) == before


def p004_slides(folder: Path) -> Path:
    """P004's slides: a TIFF with the 72-dpi default resolution and an unreadable .svs."""
    write_slide_folder(folder)
    shutil.rmtree(folder / "scanner")
    for name in ("P001_HE.tiff", "P003_Färbung-ü.tiff"):
        (folder / name).unlink()
    return folder


def test_unreadable_and_unresolved_slides_are_named_with_the_reason_and_the_fix(imported, tmp_path, capsys):
    before = store_rows(imported)
    folder = p004_slides(tmp_path / "more")
    lines = bad_import(imported, capsys, "--slides", str(folder))
    assert lines == [
        "P004_HE.tiff: no µm/px: its recorded resolution is implausible; give it in an mpp column of a mapping CSV (--slide-map), "
        "or for every such slide with --mpp",
        "P004_broken.svs: OpenSlide cannot open it: Unsupported or missing image file",
    ]
    assert store_rows(imported) == before
    assert not (imported / "slides" / "P004_HE.tiff").exists()


def test_skip_invalid_imports_the_rest_and_writes_what_was_skipped(imported, tmp_path, capsys):
    folder = p004_slides(tmp_path / "more")
    capsys.readouterr()
    assert main(["import", "--workspace", str(imported), "--slides", str(folder), "--skip-invalid"]) == 0
    out = capsys.readouterr().out
    assert "warning: P004_HE.tiff: its recorded 352.8 µm/px is not a microscope's" in out
    assert "slides: 0 new, 0 changed, 0 unchanged" in out
    report = next((imported / "imports").glob("skipped-*.csv")).read_text(encoding="utf-8").splitlines()
    assert report[0] == "file,row,column,problem"
    assert [line.split(",")[0] for line in report[1:]] == ["P004_HE.tiff", "P004_broken.svs"]
    assert "P004_HE" not in {r[0] for r in store_rows(imported)["slides"]}


def test_a_slide_name_already_linked_to_another_file_is_refused(imported, tmp_path, capsys):
    before = store_rows(imported)
    other = write_generic_tiff(tmp_path / "elsewhere" / "P001_HE.tiff", size=256)
    assert bad_import(imported, capsys, "--slides", str(other.parent)) == [
        f"P001_HE.tiff: {imported.resolve() / 'slides' / 'P001_HE.tiff'} already exists and is another file; rename the slide or remove that file"]
    assert store_rows(imported) == before


def test_a_mapping_csv_gives_ids_patients_and_the_missing_resolution(imported, tmp_path, capsys):
    folder = tmp_path / "scans"
    write_generic_tiff(folder / "scan 0001.tif", size=512, mpp=None)
    mapping = write_csv(tmp_path / "map.csv", ["file", "slide_id", "patient_id", "mpp", "label"], [["scan 0001.tif", "P004-A", "P004", "0.5", "1"]])
    capsys.readouterr()
    assert main(["import", "--workspace", str(imported), "--slides", str(folder), "--slide-map", str(mapping)]) == 0
    slide = next(r for r in store_rows(imported)["slides"] if r[0] == "P004-A")
    assert slide[1:6] == ("P004", "scan 0001.tif", 0.5, 512, 512) and slide[8] == 1


def test_the_command_line_reports_problems_on_stderr_with_exit_code_2(tmp_path):
    lab = tmp_path / "lab"
    write_cohort(lab)
    write_csv(lab / "visits.csv", ["patient_id", "day", "fvc_percent"], [["P001", "0", "80"], ["P001", "0", "81"]])
    result = run_cli("import", "--workspace", str(tmp_path / "ws"), "--patients", str(lab / "patients.csv"), "--visits", str(lab / "visits.csv"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[1] == ("visits.csv, row 3, column day: a second visit on the same day 0 for patient 'P001' after 0 on row 2; "
                                             "list each patient's visits in time order, one per day")
    assert store_rows(tmp_path / "ws") in ({}, {t: [] for t in TABLES})


def test_a_slide_that_opens_but_fails_on_read(imported, tmp_path, capsys):
    from core.workspace import open_workspace
    from dashboard.app import create_app
    from tests.cohort_files import corrupt_tiles
    from tests.helpers import add_test_accounts, sign_in

    bad = corrupt_tiles(write_generic_tiff(tmp_path / "bad" / "P004_HE.tiff", size=512))
    assert bad_import(imported, capsys, "--slides", str(bad.parent)) == [
        "P004_HE.tiff: OpenSlide opens it but cannot read it: Not a JPEG file: starts with 0x00 0x00"]

    good = write_generic_tiff(tmp_path / "good" / "P004_HE.tiff", size=512)
    assert main(["import", "--workspace", str(imported), "--slides", str(good.parent)]) == 0
    corrupt_tiles(good)  # broken after it was imported
    add_test_accounts(imported)
    ws = open_workspace(imported)
    client = create_app(ws).server.test_client()
    sign_in(client)
    response = client.get("/slides/P004_HE/thumbnail.jpeg")
    assert response.status_code == 422
    assert response.get_data(as_text=True) == "slide file P004_HE.tiff opens but cannot be read: Not a JPEG file: starts with 0x00 0x00"
    ws.store.dispose()
