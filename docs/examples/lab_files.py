"""Stand-in for a lab's own files: the three CSVs and the slide folder that ``run_dashboard.py import`` reads.

    python docs/examples/lab_files.py /path/to/lab-files

It writes patients.csv (+ patients.toml), visits.csv (+ visits.toml), reports.csv and slides/ (three small pyramidal
TIFFs named {patient}_{slide}.tiff). Replace them with your own exports and scanner files; the columns are described
in docs/workspace.md.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import tifffile

N_PATIENTS = 150


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_slide(path: Path, seed: int, size: int = 1024, mpp: float = 0.5) -> None:
    """A pyramidal tiled TIFF with its resolution in pixels per centimetre, as OpenSlide's generic TIFF reader wants it."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 236, np.uint8)
    q = size // 4
    image[q : 3 * q, q : 3 * q] = (np.array([200, 120, 180]) + rng.integers(-25, 25, (2 * q, 2 * q, 1))).clip(0, 255)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for level in range(3):
            step = 2**level
            tif.write(image[::step, ::step], tile=(256, 256), compression="jpeg", photometric="rgb",
                      resolution=(1e4 / (mpp * step),) * 2, resolutionunit="CENTIMETER", subfiletype=int(level > 0))


def main(folder: Path) -> None:
    rng = np.random.default_rng(7)
    (folder / "slides").mkdir(parents=True, exist_ok=True)
    ids = [f"LAB-{i:04d}" for i in range(1, N_PATIENTS + 1)]
    write_csv(folder / "patients.csv", ["patient_id", "age", "sex", "onset_type"],
              [[p, int(rng.integers(35, 85)), "FM"[i % 2], ["spinal", "bulbar"][i % 3 == 0]] for i, p in enumerate(ids)])
    (folder / "patients.toml").write_text('[columns.age]\nlabel = "Age"\nunit = "years"\n\n[columns.onset_type]\nlabel = "Onset"\n',
                                          encoding="utf-8")
    visits, reports = [], []
    for p in ids:
        risk = rng.normal()
        for k, date in enumerate(["2024-02-05", "2024-05-06"]):  # two visits, 91 days apart
            label = int(risk + 0.3 * k + rng.normal(0, 0.7) > 0.8)
            visits.append([p, date, round(80 - 10 * risk - 5 * k + rng.normal(0, 5), 1), round(9 - risk + rng.normal(0, 1), 1), label])
        grade = 4 if risk > 0.5 else 3
        reports.append([f"{p}-R1", p, "2024-02-20", int(grade == 4),
                        f"PROSTATE, NEEDLE BIOPSY\nAdenocarcinoma, Gleason score {grade}+{grade}={2 * grade}."])
    write_csv(folder / "visits.csv", ["patient_id", "date", "fvc_percent", "alsfrs_respiratory", "label"], visits)
    (folder / "visits.toml").write_text('[columns.fvc_percent]\nlabel = "FVC"\nunit = "% predicted"\nrange = [10.0, 130.0]\n\n'
                                        '[columns.alsfrs_respiratory]\nunit = "points"\nrange = [0.0, 12.0]\n', encoding="utf-8")
    write_csv(folder / "reports.csv", ["report_id", "patient_id", "date", "label", "text"], reports)
    for k, p in enumerate(ids[:3]):
        write_slide(folder / "slides" / f"{p}_HE.tiff", seed=k)
    print(f"lab files written to {folder}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
