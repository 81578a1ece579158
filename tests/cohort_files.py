"""A lab's cohort as files, written by the tests: patients, visits and reports CSVs, and a slide folder of several
formats (a generic TIFF, an Aperio SVS-like TIFF, a DICOM-WSI series, a TIFF with a 72-dpi default resolution, a
unicode-named file, an unreadable file)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

FEATURES = ["fvc_percent", "alsfrs_respiratory"]


def _tissue(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 236, np.uint8)
    q = size // 4
    image[q : 3 * q, q : 3 * q] = (190 + rng.integers(-20, 20, (2 * q, 2 * q, 1))).clip(0, 255).astype(np.uint8) * np.array([1, 0.6, 0.9])
    return image


def write_generic_tiff(path: Path, size: int = 1024, mpp: float | None = 0.5, seed: int = 0) -> Path:
    """A pyramidal tiled TIFF that OpenSlide reads as generic TIFF; ``mpp=None`` writes a 72-dpi resolution (no scanner's)."""
    image = _tissue(size, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for level in range(3):
            step = 2**level
            if mpp is None:
                resolution, unit = (72, 72), "INCH"
            else:
                resolution, unit = (1e4 / (mpp * step),) * 2, "CENTIMETER"
            tif.write(image[::step, ::step], tile=(256, 256), compression="jpeg", photometric="rgb",
                      resolution=resolution, resolutionunit=unit, subfiletype=int(level > 0))
    return path


def write_svs_like(path: Path, size: int = 1024, mpp: float = 0.25, seed: int = 1) -> Path:
    """A tiled TIFF with an Aperio ImageDescription: OpenSlide opens it with its Aperio reader and reads MPP from it."""
    image = _tissue(size, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path) as tif:
        for level in range(2):
            step = 4**level
            description = (f"Aperio Image Library v12.0.15\r\n{size}x{size} [0,0 {size}x{size}] (256x256) JPEG/RGB Q=80|AppMag = 40|MPP = {mpp}"
                           if level == 0 else f"Aperio Image Library v12.0.15\r\n{size}x{size} -> {size // step}x{size // step} - ")
            tif.write(image[::step, ::step], tile=(256, 256), compression="jpeg", photometric="rgb", description=description,
                      metadata=None)
    return path


VL_WHOLE_SLIDE_MICROSCOPY_IMAGE = "1.2.840.10008.5.1.4.1.1.77.1.6"


def write_dicom_wsi(folder: Path, size: int = 1024, mpp: float = 0.5, seed: int = 4, tile: int = 256) -> Path:
    """A DICOM-WSI series as a scanner exports it: one VL Whole Slide Microscopy Image file per pyramid level in one
    folder, sharing a Series Instance UID; image type ORIGINAL/PRIMARY/VOLUME (level 0) or DERIVED/PRIMARY/VOLUME,
    TILED_FULL frames in row-major order, JPEG baseline, pixel spacing in the shared functional groups.
    These are what OpenSlide's DICOM reader needs (openslide.org/formats/dicom)."""
    image = _tissue(size, seed)
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    for level in range(2):
        step = 2**level
        pixels = image[::step, ::step]
        rows, cols = pixels.shape[:2]
        frames = []
        for y in range(0, rows, tile):
            for x in range(0, cols, tile):
                block = np.full((tile, tile, 3), 255, np.uint8)  # edge frames are padded to the tile size, as TILED_FULL requires
                part = pixels[y : y + tile, x : x + tile]
                block[: part.shape[0], : part.shape[1]] = part
                buffer = io.BytesIO()
                Image.fromarray(block).save(buffer, "JPEG", quality=90, subsampling=2)
                frames.append(buffer.getvalue())
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = VL_WHOLE_SLIDE_MICROSCOPY_IMAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = VL_WHOLE_SLIDE_MICROSCOPY_IMAGE, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame_of_reference
        ds.Modality, ds.PatientID, ds.PatientName, ds.ContainerIdentifier = "SM", folder.name, folder.name, folder.name
        ds.ImageType = ["ORIGINAL" if level == 0 else "DERIVED", "PRIMARY", "VOLUME", "NONE" if level == 0 else "RESAMPLED"]
        ds.InstanceNumber, ds.DimensionOrganizationType = level + 1, "TILED_FULL"
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.Rows = ds.Columns = tile
        ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns = rows, cols
        ds.NumberOfFrames = len(frames)
        ds.ImagedVolumeWidth, ds.ImagedVolumeHeight = size * mpp / 1000, size * mpp / 1000  # mm
        measures = Dataset()
        measures.PixelSpacing = [mpp * step / 1000, mpp * step / 1000]  # mm, row then column spacing
        measures.SliceThickness = 0.001
        shared = Dataset()
        shared.PixelMeasuresSequence = [measures]
        ds.SharedFunctionalGroupsSequence = [shared]
        ds.PixelData = encapsulate(frames)
        ds["PixelData"].VR = "OB"
        ds.save_as(folder / f"level-{level}.dcm", enforce_file_format=True)
    return folder


def write_unreadable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a slide, whatever its name says\n" * 10)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_cohort(folder: Path, n_patients: int = 4, seed: int = 0) -> dict[str, Path]:
    """patients.csv (+ patients.toml), visits.csv (two or three visits each, by date), reports.csv."""
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(1, n_patients + 1)]
    patients = write_csv(folder / "patients.csv", ["patient_id", "age", "sex", "onset_type"],
                         [[p, int(rng.integers(40, 80)), ["F", "M"][i % 2], ["spinal", "bulbar"][i % 2]] for i, p in enumerate(ids)])
    (folder / "patients.toml").write_text('[columns.age]\nlabel = "Age"\nunit = "years"\n\n[columns.onset_type]\nlabel = "Onset"\n', encoding="utf-8")
    visits = []
    for i, p in enumerate(ids):
        for k, date in enumerate(["2021-01-04", "2021-04-06", "2021-07-05"][: 2 + i % 2]):
            visits.append([p, date, round(90 - 8 * k - 3 * i % 11, 1), round(11 - k - i % 3, 1), ["spinal", "bulbar"][i % 2], int(i % 2 == 1)])
    visit_file = write_csv(folder / "visits.csv", ["patient_id", "date", *FEATURES, "onset_type", "label"], visits)
    reports = write_csv(folder / "reports.csv", ["report_id", "patient_id", "date", "label", "text"],
                        [[f"{p}-R1", p, "2021-01-20", i % 2, f"PROSTATE, NEEDLE BIOPSY\nAdenocarcinoma, Gleason score {3 + i % 2}+{3 + i % 2}."]
                         for i, p in enumerate(ids)])
    return {"patients": patients, "visits": visit_file, "reports": reports}


def write_slide_folder(folder: Path) -> dict[str, Path]:
    """Slides named {patient}_{slide}: a generic TIFF, an SVS-like file in a subfolder, a unicode-named TIFF, a TIFF with
    the 72-dpi default, and an unreadable .svs; plus a README that is not a slide."""
    files = {
        "generic": write_generic_tiff(folder / "P001_HE.tiff", seed=1),
        "svs": write_svs_like(folder / "scanner" / "P002_HE.svs", seed=2),
        "unicode": write_generic_tiff(folder / "P003_Färbung-ü.tiff", size=512, seed=3),
        "dpi72": write_generic_tiff(folder / "P004_HE.tiff", size=512, mpp=None, seed=4),
        "unreadable": write_unreadable(folder / "P004_broken.svs"),
    }
    (folder / "README.txt").write_text("slides of the lab's cohort\n", encoding="utf-8")
    return files


def write_labelled_cohort(folder: Path, n_patients: int, seed: int = 0) -> dict[str, Path]:
    """patients.csv and visits.csv of ``n_patients`` with two visits 90 days apart, whose labels follow a latent risk
    that the features show (FVC falls and ALSFRS-R respiratory drops with it), so a fitted model has something to learn."""
    rng = np.random.default_rng(seed)
    ids = [f"L{i:05d}" for i in range(n_patients)]
    patients = write_csv(folder / "patients.csv", ["patient_id", "age", "sex"], [[p, int(rng.integers(35, 85)), "FM"[i % 2]] for i, p in enumerate(ids)])
    rows = []
    for i, p in enumerate(ids):
        risk = rng.normal()
        for k in range(2):
            label = int(risk + 0.3 * k + rng.normal(0, 0.7) > 0.8)
            rows.append([p, 90 * k, round(80 - 10 * risk - 5 * k + rng.normal(0, 5), 1), round(9 - risk + rng.normal(0, 1), 1),
                         ["spinal", "bulbar"][i % 2], label])
    visits = write_csv(folder / "visits.csv", ["patient_id", "day", *FEATURES, "onset_type", "label"], rows)
    (folder / "visits.toml").write_text('[columns.fvc_percent]\nlabel = "FVC"\nunit = "% predicted"\nrange = [10.0, 130.0]\n\n'
                                        '[columns.alsfrs_respiratory]\nunit = "points"\nmissing = "cohort_mean"\n', encoding="utf-8")
    return {"patients": patients, "visits": visits, "sidecar": folder / "visits.toml"}


def corrupt_tiles(path: Path) -> Path:
    """Overwrite the start of every tile's JPEG data: OpenSlide still opens the file (its directories are intact), and
    then fails on reading any region."""
    with tifffile.TiffFile(path) as tif:
        offsets = [o for page in tif.pages for o in page.dataoffsets]
    with path.open("r+b") as f:
        for offset in offsets:
            f.seek(offset)
            f.write(b"\x00" * 16)
    return path
