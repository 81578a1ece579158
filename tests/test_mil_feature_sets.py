"""Feature sets registered in a workspace (CLAM h5/pt, TRIDENT), the heads' manifests that name them and their encoder,
the built-in ViT's timm key layout, and the MIL maps' placement, tiles and triage order, worked by hand."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import PathReviewError
from core.features import files as files_module
from core.features.feature_sets import FEATURE_SET_FILE, feature_sets_of_slide, read_feature_set, register_feature_set, slide_features
from core.features.files import FeatureFileError, non_finite_rows, read_clam_h5
from core.features.maps import predict, predict_while_reading
from core.heatmaps.feature_layers import DisplayGrid, parse_region, region_name, render_display_tile
from core.heatmaps.feature_triage import TriageRow, sort_rows
from core.heatmaps.region_refinement import RefinedRegion, Region
from core.models.clam import CLAMSB
from core.models.manifest import ModelManifest, PatchEncoderSpec, write_manifest
from core.models.registry import file_sha256, load_model
from core.models.vit import VisionTransformer
from core.store.database import open_store
from core.store.schema import Patient, Slide
from core.workspace import WorkspaceConfig, open_workspace, write_workspace_config
from dashboard.routes import mil_tile_style
from tests.feature_files import clam_patch_attrs, grid_coords, trident_coords_attrs, write_clam, write_trident

RNG = np.random.default_rng(1)
FEATURES = RNG.normal(size=(40, 8)).astype(np.float32)
COORDS = grid_coords(40, 256)  # 10 columns x 4 rows of 256 px: reaches 2560 x 1024


@pytest.fixture
def lab(tmp_path):
    """A workspace with two slides in its store (4096 x 3072 and 1024 x 1024 at level 0); no slide files are needed."""
    root = tmp_path / "ws"
    root.mkdir()
    write_workspace_config(root, WorkspaceConfig(name="lab"))
    store = open_store(f"sqlite:///{root / 'cases.db'}")
    with store.session() as s:
        s.add(Patient(id="P1", attributes={"age": 60, "sex": "M"}))
        s.add(Slide(id="S-A", patient_id="P1", file="S-A.svs", mpp=0.5, width=4096, height=3072))
        s.add(Slide(id="S-B", patient_id="P1", file="S-B.svs", mpp=0.5, width=1024, height=1024))
    store.dispose()
    ws = open_workspace(root)
    yield ws
    ws.store.dispose()


def test_clam_h5_set_is_registered_copied_and_read_back(lab, tmp_path):
    clam = tmp_path / "clam"
    write_clam(clam, "S-A", FEATURES, COORDS, clam_patch_attrs("S-A", level_dim=(4096, 3072)))
    manifest = register_feature_set(lab.root, lab.store, "uni_v1", "UNI", "clam_h5", clam)
    assert manifest.dim == 8 and list(manifest.slides) == ["S-A"]  # S-B has no file: not in the set
    assert manifest.slides["S-A"].features == "h5_files/S-A.h5" and manifest.slides["S-A"].patches == "patches/S-A.h5"
    assert (lab.root / "features" / "uni_v1" / FEATURE_SET_FILE).is_file()
    fs = slide_features(lab.root, lab.store, "uni_v1", "S-A", in_dim=8)
    np.testing.assert_array_equal(fs.features, FEATURES)
    assert read_feature_set(lab.root, "uni_v1").encoder == "UNI"
    with pytest.raises(PathReviewError, match="already registered"):
        register_feature_set(lab.root, lab.store, "uni_v1", "UNI", "clam_h5", clam)


def test_a_slide_has_one_set_per_encoder(lab, tmp_path):
    write_clam(tmp_path / "clam", "S-A", FEATURES, COORDS, clam_patch_attrs("S-A"))
    write_trident(tmp_path / "trident", "conch_v15", "S-A", FEATURES[:, :4], COORDS, trident_coords_attrs("S-A", src_mag=20, target_mag=20))
    register_feature_set(lab.root, lab.store, "uni_v1", "UNI", "clam_pt", tmp_path / "clam")
    register_feature_set(lab.root, lab.store, "conch", "conch_v15", "trident_h5", tmp_path / "trident")
    assert feature_sets_of_slide(lab.root, "S-A") == ["conch", "uni_v1"]
    assert slide_features(lab.root, lab.store, "conch", "S-A").dim == 4 and slide_features(lab.root, lab.store, "uni_v1", "S-A").dim == 8


def test_bad_files_are_refused_with_their_message_and_nothing_is_registered(lab, tmp_path):
    # another slide's file: its patches reach x = 2560 > 1024, the width of S-B
    write_clam(tmp_path / "far", "S-B", FEATURES, COORDS, clam_patch_attrs("S-B"))
    with pytest.raises(FeatureFileError, match="slide S-B: .*outside this slide"):
        register_feature_set(lab.root, lab.store, "far", "UNI", "clam_h5", tmp_path / "far")
    # two slides whose features have different dimensions (different encoders)
    write_clam(tmp_path / "mixed", "S-A", FEATURES, COORDS, clam_patch_attrs("S-A"))
    write_clam(tmp_path / "mixed", "S-B", FEATURES[:4, :6], COORDS[:4], clam_patch_attrs("S-B"))
    with pytest.raises(FeatureFileError, match="6 dimensions but the model reads 8"):
        register_feature_set(lab.root, lab.store, "mixed", "UNI", "clam_h5", tmp_path / "mixed")
    # missing attributes
    attrs = trident_coords_attrs("S-A")
    del attrs["patch_size_level0"]
    write_trident(tmp_path / "noattr", "uni", "S-A", FEATURES, COORDS, attrs)
    with pytest.raises(FeatureFileError, match="lacks the attribute.*patch_size_level0"):
        register_feature_set(lab.root, lab.store, "noattr", "uni", "trident_h5", tmp_path / "noattr")
    # NaN features
    nan = FEATURES.copy()
    nan[3, 2] = np.nan
    write_clam(tmp_path / "nan", "S-A", nan, COORDS, clam_patch_attrs("S-A"))
    with pytest.raises(FeatureFileError, match="1 of 40 patches have NaN"):
        register_feature_set(lab.root, lab.store, "nan", "UNI", "clam_h5", tmp_path / "nan")
    # the file's name attribute names another slide
    write_clam(tmp_path / "named", "S-A", FEATURES, COORDS, clam_patch_attrs("S-Z"))
    with pytest.raises(FeatureFileError, match="written for slide 'S-Z'"):
        register_feature_set(lab.root, lab.store, "named", "UNI", "clam_h5", tmp_path / "named")
    assert not (lab.root / "features").exists() or not list((lab.root / "features").glob(f"*/{FEATURE_SET_FILE}"))


def test_a_head_manifest_names_its_set_and_encoder_and_loads_weights_only(lab):
    folder = lab.models_dir / "clam"
    folder.mkdir(parents=True)
    head = CLAMSB(gate=True, size_arg="small", dropout=0.25, n_classes=2, embed_dim=8)
    torch.save({f"module.{k}" if k.startswith("attention_net") else k: v for k, v in head.state_dict().items()}, folder / "s_0_checkpoint.pt")
    torch.save(VisionTransformer(img_size=32, patch_size=16, embed_dim=8, depth=1, num_heads=2).state_dict(), folder / "vit.pt")
    spec = PatchEncoderSpec(name="tiny", architecture="vit", params={"img_size": 32, "patch_size": 16, "embed_dim": 8, "depth": 1, "num_heads": 2},
                            weights="vit.pt", weights_sha256=file_sha256(folder / "vit.pt"), licence="MIT", patch_size_px=32, mpp=0.5)
    write_manifest(folder, ModelManifest(id="clam", name="CLAM", task="mil", architecture="clam_sb",
                                         params={"gate": True, "size_arg": "small", "dropout": 0.25, "n_classes": 2, "embed_dim": 8},
                                         weights="s_0_checkpoint.pt", weights_sha256=file_sha256(folder / "s_0_checkpoint.pt"),
                                         class_names=["a", "b"], feature_set="uni_v1", patch_encoder=spec))
    loaded = load_model(folder, torch.device("cpu"))
    assert loaded.manifest.feature_set == "uni_v1" and loaded.manifest.patch_encoder.licence == "MIT"
    for key, value in head.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[key], value)


# timm ``VisionTransformer`` state-dict keys for vit_large_patch16_224 with init_values=1e-5 and num_classes=0 (UNI),
# per block; transcribed from timm/models/vision_transformer.py (Block, Attention, LayerScale, Mlp, PatchEmbed).
TIMM_BLOCK_KEYS = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
                   "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
                   "ls2.gamma"]
TIMM_TOP_KEYS = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias"]


def test_vit_has_timms_key_names_and_loads_strictly():
    vit = VisionTransformer(img_size=32, patch_size=16, embed_dim=16, depth=2, num_heads=2, init_values=1e-5)
    expected = set(TIMM_TOP_KEYS) | {f"blocks.{i}.{k}" for i in range(2) for k in TIMM_BLOCK_KEYS}
    assert set(vit.state_dict()) == expected
    assert vit.state_dict()["pos_embed"].shape == (1, 2 * 2 + 1, 16)  # 4 patches + the class token
    state = vit.state_dict()
    VisionTransformer(img_size=32, patch_size=16, embed_dim=16, depth=2, num_heads=2, init_values=1e-5).load_state_dict(state, strict=True)
    with pytest.raises(RuntimeError, match="Missing key"):
        VisionTransformer(img_size=32, patch_size=16, embed_dim=16, depth=2, num_heads=2, init_values=1e-5).load_state_dict(
            {k: v for k, v in state.items() if "ls1" not in k}, strict=True)
    registers = VisionTransformer(img_size=32, patch_size=16, embed_dim=16, depth=1, num_heads=2, reg_tokens=4, no_embed_class=True,
                                  global_pool="avg")
    keys = set(registers.state_dict())
    assert {"reg_token", "fc_norm.weight"} <= keys and "norm.weight" not in keys
    assert registers.state_dict()["pos_embed"].shape == (1, 4, 16)  # no_embed_class: patches only
    assert registers(torch.rand(3, 3, 32, 32)).shape == (3, 16)


def test_vit_with_zero_blocks_returns_the_normalised_class_token_plus_its_position():
    """Depth 0: the output is LayerNorm(cls_token + pos_embed[0]), whatever the image."""
    vit = VisionTransformer(img_size=32, patch_size=16, embed_dim=4, depth=0, num_heads=1).eval()
    with torch.no_grad():
        vit.cls_token.copy_(torch.tensor([[[1.0, 2.0, 3.0, 4.0]]]))
        vit.pos_embed.zero_()
        out = vit(torch.rand(2, 3, 32, 32))
    centred = torch.tensor([-1.5, -0.5, 0.5, 1.5])
    torch.testing.assert_close(out, (centred / torch.sqrt(torch.tensor(1.25) + 1e-6)).expand(2, 4))


def test_refined_patches_at_50_percent_overlap_are_averaged_on_the_stride_grid():
    # two 2x2-cell patches (stride 1 cell = 128 px) side by side, overlapping in one column of cells
    refined = RefinedRegion(Region(256, 512, 1024, 1024, 0.5), np.array([[256, 512], [384, 512]]), 128.0, 256.0, np.array([1.0, 3.0]),
                            np.array([10.0, 90.0]), None, np.array([0.4, 0.6]), "slide", "enc", 0.1, "cpu")
    grid, origin = refined.cell_grid(refined.attention_raw)
    assert origin == (256.0, 512.0)
    np.testing.assert_allclose(grid[0], [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])


def test_a_display_tile_samples_the_grid_from_its_origin():
    values = np.array([[0.0, 1.0], [np.nan, 0.5]], np.float32)
    grid = DisplayGrid(values, 64.0, (128.0, 0.0), 0.0, 1.0, "x")
    # max_zoom 0: one tile of 256 px covers level-0 (0..256); columns 128..191 are cell 0, 192..255 cell 1
    rgba = np.asarray(Image.open(io.BytesIO(render_display_tile(grid, "Viridis", 0.0, 0, 0, 0, 0))))
    assert rgba[10, 10, 3] == 0  # left of the grid's origin
    assert rgba[10, 130, 3] == 255 and rgba[10, 200, 3] == 255  # both cells of the first row
    assert rgba[70, 130, 3] == 0 and rgba[70, 200, 3] == 255  # NaN cell transparent
    assert rgba[200, 200, 3] == 0  # below the grid
    thresholded = np.asarray(Image.open(io.BytesIO(render_display_tile(grid, "Viridis", 0.6, 0, 0, 0, 0))))
    assert thresholded[10, 130, 3] == 0 and thresholded[10, 200, 3] == 255 and thresholded[70, 200, 3] == 0


def test_region_names_round_trip_and_tile_styles_are_checked():
    region = parse_region("100,200,3000,1500,0.75")
    assert region == Region(100, 200, 3000, 1500, 0.75) and region_name(region) == "refine:100,200,3000,1500,0.75"
    with pytest.raises(PathReviewError, match="refine:x,y,width,height,overlap"):
        parse_region("1,2,3")
    assert mil_tile_style({"layer": "instance:tumour", "thr": "0.25"}) == ("instance:tumour", "Viridis", 0.25, "percentile")
    for bad in ({"cmap": "Rainbow"}, {"thr": "2"}, {"thr": "x"}, {"show": "both"}):
        with pytest.raises(PathReviewError):
            mil_tile_style(bad)


def test_triage_sorts_disagreements_first_then_by_confidence():
    none = np.zeros((0, 2), np.int64)
    rows = [TriageRow("s1", "p", 1, 0.9, none, 0), TriageRow("s2", "p", 0, 0.95, none, 0), TriageRow("s3", "p", 1, 0.2, none, 0),
            TriageRow("s4", "p", None, 0.7, none, 0), TriageRow("s5", "p", 0, None, none, 0)]
    assert [r.disagrees for r in rows] == [False, True, True, None, None]
    assert [r.slide_id for r in sort_rows(rows, "disagreement")][:2] == ["s2", "s3"]  # |0.95 - 0.5| > |0.2 - 0.5|
    assert [r.slide_id for r in sort_rows(rows, "probability-desc")] == ["s2", "s1", "s4", "s3", "s5"]
    assert [r.slide_id for r in sort_rows(rows, "probability-asc")] == ["s3", "s4", "s1", "s2", "s5"]
    with pytest.raises(PathReviewError):
        sort_rows(rows, "size")


def test_rows_with_nan_or_infinity_are_found_and_large_finite_rows_are_not():
    block = np.array([[1.0, 2.0], [np.nan, 0.0], [3e38, 3e38], [-np.inf, 1.0]], np.float32)  # row 2 sums to inf, all finite
    np.testing.assert_array_equal(non_finite_rows(block), [False, True, False, True])


def test_the_head_run_while_the_file_is_read_equals_the_head_on_the_whole_file(tmp_path, monkeypatch):
    monkeypatch.setattr(files_module, "BLOCK_ROWS", 7)  # several blocks, the last one short
    features = RNG.normal(size=(40, 16)).astype(np.float32)
    patches, h5, _ = write_clam(tmp_path, "S-A", features, COORDS, clam_patch_attrs("S-A"))
    torch.manual_seed(0)
    head = CLAMSB(gate=True, size_arg="small", dropout=0.0, n_classes=3, embed_dim=16).eval()
    blocks = []
    streamed, fs = predict_while_reading(head, lambda on_block: read_clam_h5(h5, patches, lambda s, r, n: (blocks.append((s, len(r), n)),
                                                                                                           on_block(s, r, n))))
    assert blocks == [(0, 7, 40), (7, 7, 40), (14, 7, 40), (21, 7, 40), (28, 7, 40), (35, 5, 40)]
    whole = predict(head, fs)
    np.testing.assert_allclose(streamed.probabilities, whole.probabilities, rtol=1e-5)
    np.testing.assert_allclose(streamed.attention_raw, whole.attention_raw, rtol=1e-5)
    np.testing.assert_allclose(streamed.instance_scores, whole.instance_scores, rtol=1e-5)
    with pytest.raises(FeatureFileError, match="16 dimensions but the model reads 8"):
        predict_while_reading(CLAMSB(embed_dim=8), lambda on_block: read_clam_h5(h5, patches, on_block))
