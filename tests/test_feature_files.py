"""CLAM and TRIDENT feature files, written with the reference layouts, read back and refused with their messages."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from core.features.files import FeatureFileError, check_fits, read_clam_h5, read_clam_pt, read_trident_h5
from tests.feature_files import clam_patch_attrs, grid_coords, trident_coords_attrs, write_clam, write_trident

RNG = np.random.default_rng(0)
FEATURES = RNG.normal(size=(150, 16)).astype(np.float32)
COORDS = grid_coords(150, 256)  # 10 columns x 15 rows of 256 px patches at level 0


def test_clam_h5_takes_geometry_from_its_patches_file(tmp_path):
    patches, h5, _ = write_clam(tmp_path, "slide_a", FEATURES, COORDS,
                                clam_patch_attrs("slide_a", patch_size=256, patch_level=1, downsample=4.0))
    with h5py.File(h5) as fh:  # CLAM's extract_features_fp writes no attributes on the feature file's coords
        assert dict(fh["coords"].attrs) == {} and fh["coords"].dtype == np.int32
    fs = read_clam_h5(h5, patches)
    np.testing.assert_array_equal(fs.features, FEATURES)
    np.testing.assert_array_equal(fs.coords, COORDS)
    assert (fs.geometry.patch_size, fs.geometry.patch_level, fs.geometry.patch_size_level0) == (256, 1, 1024)
    assert fs.slide_name == "slide_a" and fs.dim == 16 and len(fs) == 150


def test_clam_pt_reads_with_its_patches_coords(tmp_path):
    patches, _, pt = write_clam(tmp_path, "slide_a", FEATURES, COORDS)
    fs = read_clam_pt(pt, patches)
    np.testing.assert_array_equal(fs.features, FEATURES)
    np.testing.assert_array_equal(fs.coords, COORDS)
    assert fs.geometry.patch_size_level0 == 256


def test_trident_h5_reads_features_coords_and_magnification(tmp_path):
    path = write_trident(tmp_path, "uni_v1", "slide_b", FEATURES, COORDS * 2)
    assert path.parent.name == "features_uni_v1"
    fs = read_trident_h5(path)
    np.testing.assert_array_equal(fs.features, FEATURES)
    np.testing.assert_array_equal(fs.coords, COORDS * 2)
    g = fs.geometry
    assert (g.patch_size, g.patch_size_level0, g.level0_magnification, g.target_magnification) == (256, 512, 40.0, 20.0)


def test_clam_h5_without_its_patches_file_asks_for_it(tmp_path):
    _, h5, _ = write_clam(tmp_path, "slide_a", FEATURES, COORDS)
    with pytest.raises(FeatureFileError, match=r"name the patches/slide_a\.h5 that create_patches_fp\.py wrote"):
        read_clam_h5(h5)


def test_missing_attributes_are_named(tmp_path):
    attrs = clam_patch_attrs("slide_a")
    del attrs["patch_level"], attrs["downsample"]
    patches, h5, _ = write_clam(tmp_path, "slide_a", FEATURES, COORDS, attrs)
    with pytest.raises(FeatureFileError, match=r"slide_a\.h5: the 'coords' dataset lacks the attribute\(s\) patch_level, downsample"):
        read_clam_h5(h5, patches)
    t_attrs = trident_coords_attrs("slide_b")
    del t_attrs["patch_size_level0"]
    path = write_trident(tmp_path, "conch_v15", "slide_b", FEATURES, COORDS, t_attrs)
    with pytest.raises(FeatureFileError, match=r"lacks the attribute\(s\) patch_size_level0 that TRIDENT writes"):
        read_trident_h5(path)


def test_nan_features_are_refused_with_where(tmp_path):
    bad = FEATURES.copy()
    bad[13, 3] = np.nan
    bad[40, 0] = np.inf
    path = write_trident(tmp_path, "uni_v1", "slide_b", bad, COORDS)
    with pytest.raises(FeatureFileError, match=r"2 of 150 patches have NaN or infinite features \(first at level-0 x=768, y=256\)"):
        read_trident_h5(path)


def test_feature_and_coordinate_counts_must_match(tmp_path):
    path = write_trident(tmp_path, "uni_v1", "slide_b", FEATURES, COORDS)
    with h5py.File(path, "a") as fh:
        fh["coords"].resize(149, axis=0)
    with pytest.raises(FeatureFileError, match="150 feature rows but 149 coordinates"):
        read_trident_h5(path)
    patches, _, pt = write_clam(tmp_path, "slide_a", FEATURES, COORDS)
    torch.save(torch.from_numpy(FEATURES[:100]), pt)
    with pytest.raises(FeatureFileError, match="100 feature rows but 150 coordinates"):
        read_clam_pt(pt, patches)


def test_clam_h5_and_patches_file_of_different_runs(tmp_path):
    patches, h5, _ = write_clam(tmp_path, "slide_a", FEATURES, COORDS)
    write_clam(tmp_path / "other", "slide_a", FEATURES, COORDS + 256)
    with pytest.raises(FeatureFileError, match="list different patches"):
        read_clam_h5(h5, tmp_path / "other" / "patches" / "slide_a.h5")


def test_a_file_for_another_slide_is_refused(tmp_path):
    fs = read_trident_h5(write_trident(tmp_path, "uni_v1", "slide_b", FEATURES, COORDS))
    check_fits(fs, (2560, 3840), in_dim=16)  # the grid's last patch starts at (2304, 3584): inside
    with pytest.raises(FeatureFileError, match=r"20 of 150 patches lie outside this slide \(2560 x 3328 px at level 0; .*belongs to another slide"):
        check_fits(fs, (2560, 3328))


def test_a_file_naming_another_slide_is_refused(tmp_path):
    fs = read_trident_h5(write_trident(tmp_path, "uni_v1", "slide_b", FEATURES, COORDS))
    check_fits(fs, (10_000, 10_000), slide_name="slide_b")
    with pytest.raises(FeatureFileError, match="written for slide 'slide_b', not 'slide_c'; the file belongs to another slide"):
        check_fits(fs, (10_000, 10_000), slide_name="slide_c")


def test_feature_dimension_must_match_the_head(tmp_path):
    fs = read_trident_h5(write_trident(tmp_path, "uni_v1", "slide_b", FEATURES, COORDS))
    with pytest.raises(FeatureFileError, match="features have 16 dimensions but the model reads 1024"):
        check_fits(fs, (10_000, 10_000), in_dim=1024)


def test_not_hdf5_and_missing_datasets(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(FeatureFileError, match="not a readable HDF5 file"):
        read_trident_h5(junk)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as fh:
        fh["coords"] = COORDS
    with pytest.raises(FeatureFileError, match="has no 'features' dataset"):
        read_trident_h5(empty)
