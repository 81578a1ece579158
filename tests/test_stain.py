"""Stain normalisation against the reference (torchstain's numpy backend, 1.4.1, pinned in requirements-dev.txt) on
the same images, and the manifest's declared normalisation applied in inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchstain.numpy.normalizers.macenko import NumpyMacenkoNormalizer
from torchstain.numpy.normalizers.reinhard import NumpyReinhardNormalizer

from core.errors import ModelLoadError
from core.heatmaps.inference import classify_patches
from core.models.manifest import InputSpec, StainTarget, read_manifest
from core.slides import stain_cpu
from core.slides.slide_stain import bound_to_slide, estimate_stain, sample_indices
from core.slides.stain import (
    _SAMPLE_STRIDE,
    MACENKO_BETA,
    MACENKO_IO,
    REFERENCE_MAX_CONCENTRATIONS,
    REFERENCE_STAIN_MATRIX,
    _extremes,
    _stained_limit,
    fit_macenko,
    fit_reinhard,
    macenko_normalise,
    macenko_stains,
    macenko_transfer,
    masked_percentile,
    model_input,
    normalise_stain,
    optical_density,
    order_statistics,
    reinhard_normalise,
)
from tests.synthetic_patches import concentrations, he_patch, render, shifted_stain

TOLERANCE = 2  # grey levels of 255: the reference and this code differ only where float rounding meets uint8 truncation


@pytest.fixture(scope="module")
def patches() -> np.ndarray:
    """Patches of several stains and intensities, as several labs would give."""
    rng = np.random.default_rng(3)
    out = []
    for k in range(12):
        h_vec, e_vec, intensity = shifted_stain(rng) if k % 2 else (None, None, 1.0)
        kwargs = {} if h_vec is None else {"h_vector": h_vec, "e_vector": e_vec}
        out.append(he_patch(rng, 128, intensity=intensity, **kwargs))
    return np.stack(out)


def test_optical_density_by_hand():
    # -log((I + 1) / 240): 239 is the light itself (OD 0); 23 lets a tenth of it through (OD log 10).
    od = optical_density(torch.tensor([[[[239, 23, 119]]]], dtype=torch.uint8))
    assert od[0, :, 0].tolist() == pytest.approx([0.0, np.log(10), np.log(2)], abs=1e-6)


def test_masked_percentile_is_numpys_linear_percentile():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(5, 997)).astype(np.float32)
    mask = rng.random((5, 997)) > 0.3
    for q in (1, 25, 50, 99):
        got = masked_percentile(torch.from_numpy(values), q, torch.from_numpy(mask)).numpy()
        assert got == pytest.approx([np.percentile(v[m], q) for v, m in zip(values, mask, strict=True)], abs=1e-6)
    # A hand-worked case: the 25th percentile of 1..5 lies at position 1 exactly (2.0); the 90th at 3.6 (4.6).
    ranks = torch.tensor([[5.0, 1.0, 4.0, 2.0, 3.0]])
    assert masked_percentile(ranks, 25).item() == pytest.approx(2.0)
    assert masked_percentile(ranks, 90).item() == pytest.approx(4.6)


def test_order_statistics_are_a_full_sorts_with_ties_and_left_out_values():
    rng = np.random.default_rng(1)
    values = torch.from_numpy(rng.integers(0, 300, (6, 5000)).astype(np.float32))  # many ties
    values[0, :4000] = float("inf")  # left out (ranked last from the bottom): only 1,000 numbers remain
    ranks = torch.from_numpy(rng.integers(0, 50, (6, 2)))
    expected = values.sort(1).values.gather(1, ranks)
    assert torch.equal(order_statistics(values, ranks), expected)
    values[0, :4000] = float("-inf")
    expected = values.sort(1, descending=True).values.gather(1, ranks)
    assert torch.equal(order_statistics(values, ranks, largest=True), expected)
    # 5,003 values: the three past the last full row of 8 groups are candidates too
    tail = torch.cat([values, torch.full((6, 3), 1000.0)], 1)
    assert order_statistics(tail, torch.zeros((6, 1), dtype=torch.long), largest=True).flatten().tolist() == [1000.0] * 6
    # NaN is left out as the infinities are, from either end
    values[0, :4000] = float("nan")
    assert torch.equal(order_statistics(values, ranks, largest=True), expected)
    assert torch.equal(order_statistics(values, ranks), torch.nan_to_num(values, float("inf")).sort(1).values.gather(1, ranks))


def test_order_statistics_from_a_misleading_sample_fall_back_to_the_whole_row():
    # every sampled value (each _SAMPLE_STRIDE-th) is among the row's largest, so the values past the sample's
    # threshold are too few for the ranks asked; the whole row is ranked instead
    values = torch.arange(_SAMPLE_STRIDE * 40, dtype=torch.float32)[None].repeat(2, 1)
    values[:, ::_SAMPLE_STRIDE] += 1e6
    ranks = torch.tensor([[45, 46], [0, 60]])
    expected = values.sort(1, descending=True).values.gather(1, ranks)
    assert torch.equal(order_statistics(values, ranks, largest=True), expected)


def test_the_cuda_selection_picks_what_the_cpu_selection_picks():
    # the torch path (used on CUDA) run on CPU tensors: the same order statistics as the CPU's numpy path
    rng = np.random.default_rng(2)
    values = torch.from_numpy(rng.integers(0, 300, (4, 50_176)).astype(np.float32))
    values[1, :30_000] = float("-inf")
    for largest in (False, True):
        ranks = torch.from_numpy(rng.integers(0, 500, (4, 2)))
        filled = values if largest else torch.nan_to_num(values, neginf=float("inf"))
        k = int(ranks.max()) + 1
        assert torch.equal(_extremes(filled, k, largest).gather(1, ranks), order_statistics(filled, ranks, largest))


def test_intensities_outside_a_byte_are_refused_not_read_past_the_od_table():
    target = torch.tensor(REFERENCE_STAIN_MATRIX), torch.tensor(REFERENCE_MAX_CONCENTRATIONS)
    with pytest.raises(ValueError, match="0 to 255"):
        macenko_normalise(torch.full((1, 8, 8, 3), 300, dtype=torch.int32), *target)
    with pytest.raises(ValueError, match="0 to 255"):
        macenko_normalise(torch.full((1, 8, 8, 3), 100.5), *target)
    # integer intensities of another type are normalised as the same bytes
    image = torch.from_numpy(he_patch(np.random.default_rng(6), 64))[None]
    assert torch.equal(macenko_normalise(image.to(torch.int64), *target), macenko_normalise(image, *target))


def test_the_cpus_fused_passes_write_what_the_passes_one_by_one_write(patches):
    b, n = len(patches), patches.shape[1] * patches.shape[2]
    pixels = patches.reshape(b, n, 3)
    table = -np.log((np.arange(256) + 1.0) / MACENKO_IO)  # float64, as the reference's logarithm
    limit = _stained_limit(MACENKO_IO, MACENKO_BETA)
    od, kept = np.empty((b, 3, n), np.float32), np.empty((b, 3, n), np.float32)
    stained, sums = np.empty((b, n), np.float32), np.empty((b, 10))
    stain_cpu.od_and_moments(pixels, table.astype(np.float32), limit, od, kept, stained, sums)
    expected_od = table[pixels.transpose(0, 2, 1)]
    assert np.array_equal(od, expected_od.astype(np.float32))
    # stained: the reference's ODhat, no channel's OD below beta (the integer limit decides exactly that)
    is_stained = (expected_od >= MACENKO_BETA).all(1)
    assert 0.05 < is_stained.mean() < 0.95  # both kinds of pixel
    assert np.array_equal(stained, is_stained.astype(np.float32))
    assert np.array_equal(kept, od * stained[:, None])
    held = kept.astype(np.float64)
    gram = np.einsum("bin,bjn->bij", held, held)
    assert sums[:, :6] == pytest.approx(gram[:, [0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2]], rel=1e-12)
    assert sums[:, 6:9] == pytest.approx(held.sum(2), rel=1e-12)
    assert sums[:, 9].tolist() == is_stained.sum(1).tolist()

    plane = np.random.default_rng(4).normal(size=(b, 2, 3)).astype(np.float32)
    key = np.empty((b, n), np.float32)
    stain_cpu.projection_ratio(kept, plane, key)
    # in float32, the terms summed in the order written: That_0 / That_1
    projected = [sum(plane[:, row, c, None] * kept[:, c] for c in range(3)) for row in (0, 1)]
    with np.errstate(invalid="ignore"):
        assert np.array_equal(key, projected[0] / projected[1], equal_nan=True)
    assert np.array_equal(np.isnan(key), ~is_stained)  # 0 / 0 where transparent

    rebuilt = np.random.default_rng(5).uniform(0, 400, (2, 3, 1000)).astype(np.float32)
    rebuilt[1, 2, 7] = np.nan  # an image that could not be fitted
    interleaved = np.empty((2, 1000, 3), np.uint8)
    stain_cpu.interleaved_bytes(rebuilt, interleaved)
    expected = np.minimum(np.nan_to_num(rebuilt, nan=255), 255).astype(np.uint8).transpose(0, 2, 1)
    assert np.array_equal(interleaved, expected)


def test_macenko_matches_the_reference_on_the_same_images(patches):
    reference = NumpyMacenkoNormalizer()
    expected = np.stack([reference.normalize(p, stains=False)[0] for p in patches])
    got = macenko_normalise(torch.from_numpy(patches), torch.tensor(REFERENCE_STAIN_MATRIX), torch.tensor(REFERENCE_MAX_CONCENTRATIONS)).numpy()
    assert np.abs(got.astype(int) - expected).max() <= TOLERANCE
    assert (got != expected).mean() < 1e-3  # nearly every pixel is identical
    # the estimated stain vectors and concentrations, fitted per patch, are the reference's fit
    for patch, matrix, max_c in zip(patches, macenko_stains(torch.from_numpy(patches)).stain_matrix,
                                    macenko_stains(torch.from_numpy(patches)).max_concentrations, strict=True):
        reference.fit(patch)
        assert matrix.numpy() == pytest.approx(reference.HERef, abs=1e-4)
        assert max_c.numpy() == pytest.approx(reference.maxCRef, rel=1e-4)


def test_macenko_fit_to_a_target_matches_the_reference(patches):
    reference = NumpyMacenkoNormalizer()
    reference.fit(patches[0])
    matrix, max_c = fit_macenko(torch.from_numpy(patches[0]))
    assert np.array(matrix) == pytest.approx(reference.HERef, abs=1e-4)
    assert np.array(max_c) == pytest.approx(reference.maxCRef, rel=1e-4)
    expected = np.stack([reference.normalize(p, stains=False)[0] for p in patches[1:]])
    got = macenko_normalise(torch.from_numpy(patches[1:]), torch.tensor(matrix), torch.tensor(max_c)).numpy()
    assert np.abs(got.astype(int) - expected).max() <= TOLERANCE


def test_macenko_matches_the_reference_when_the_stains_vary_against_each_other():
    """Haematoxylin and eosin anti-correlated (the total stain nearly constant): the largest eigenvector of the OD
    covariance is H - E, with components of both signs, so the angles are taken as the reference takes them."""
    rng = np.random.default_rng(5)
    share, total = rng.uniform(0, 1, (64, 64)), 1.0 + 0.05 * rng.normal(size=(64, 64))
    h_vec, e_vec = np.array([0.2, 0.9, 0.4]), np.array([0.9, 0.2, 0.4])
    od = (total * share)[..., None] * h_vec / np.linalg.norm(h_vec) + (total * (1 - share))[..., None] * e_vec / np.linalg.norm(e_vec)
    image = np.clip(240 * np.exp(-od) + rng.normal(0, 1, od.shape), 0, 255).astype(np.uint8)
    reference = NumpyMacenkoNormalizer()
    expected = reference.normalize(image, stains=False)[0]
    got = macenko_normalise(torch.from_numpy(image[None]), torch.tensor(REFERENCE_STAIN_MATRIX), torch.tensor(REFERENCE_MAX_CONCENTRATIONS))[0].numpy()
    assert np.abs(got.astype(int) - expected).max() <= TOLERANCE
    reference.fit(image)
    stains = macenko_stains(torch.from_numpy(image[None]))
    assert stains.stain_matrix[0].numpy() == pytest.approx(reference.HERef, abs=1e-4)
    assert stains.max_concentrations[0].numpy() == pytest.approx(reference.maxCRef, rel=1e-4)


def _one_slide(rng: np.random.Generator, n: int = 6, px: int = 64) -> np.ndarray:
    """Patches of one slide: one lab's stain, some patches mostly stroma, some crowded with nuclei."""
    h_vec, e_vec, intensity = shifted_stain(rng)
    out = []
    for k in range(n):
        h, e = concentrations(rng, px)
        out.append(render(intensity * h * (0.3 if k % 2 else 1.6), intensity * e, rng, h_vec, e_vec))
    return np.stack(out)


def test_macenko_per_slide_is_the_reference_with_the_slide_as_its_image():
    """The slide's patches tiled into one image and normalised by the reference give, patch by patch, what each patch
    gives when rebuilt with the slide's estimate."""
    slide = _one_slide(np.random.default_rng(21))
    mosaic = slide.reshape(-1, slide.shape[2], 3)
    source = estimate_stain(slide, "macenko")
    reference = NumpyMacenkoNormalizer()
    reference.fit(mosaic)
    assert np.array(source.stain_matrix) == pytest.approx(reference.HERef, abs=1e-4)
    assert np.array(source.max_concentrations) == pytest.approx(reference.maxCRef, rel=1e-4)
    expected = NumpyMacenkoNormalizer().normalize(mosaic, stains=False)[0].reshape(slide.shape)
    got = normalise_stain(torch.from_numpy(slide), bound_to_slide(_macenko_spec().model_copy(update={"stain_fit": "slide"}), source)).numpy()
    assert np.abs(got.astype(int) - expected).max() <= TOLERANCE


def test_a_slides_estimate_maps_one_colour_to_one_colour():
    """A 4 x 4 block of the same pixels in a stroma patch and in a patch crowded with nuclei: fitted per patch the block
    comes out in two colours, fitted per slide in one. Rebuilt with a patch's own estimate, a patch is what the
    per-patch fit gives, number for number."""
    slide = _one_slide(np.random.default_rng(22))
    y, x = np.unravel_index(slide[0, :-4, :-4].sum(-1).argmin(), (60, 60))  # a nucleus, in the first patch
    block = np.s_[y : y + 4, x : x + 4]
    slide[1:3][:, block[0], block[1]] = slide[0][block]
    target = torch.tensor(REFERENCE_STAIN_MATRIX), torch.tensor(REFERENCE_MAX_CONCENTRATIONS)
    per_patch = macenko_normalise(torch.from_numpy(slide), *target).numpy()
    # patch 1, mostly eosin, is too pale to fit (left as scanned); patches 0 and 2 are fitted, each to itself
    assert not np.array_equal(per_patch[0][block], per_patch[1][block])
    assert np.abs(per_patch[0][block].astype(int) - per_patch[2][block]).max() > TOLERANCE
    source = estimate_stain(slide, "macenko")
    per_slide = macenko_transfer(torch.from_numpy(slide), torch.tensor(source.stain_matrix), torch.tensor(source.max_concentrations), *target).numpy()
    assert np.array_equal(per_slide[0][block], per_slide[1][block]) and np.array_equal(per_slide[0][block], per_slide[2][block])
    own = macenko_stains(torch.from_numpy(slide))
    for k in np.flatnonzero(own.fitted.numpy()):  # a patch the per-patch fit gives up on comes back as it was
        alone = macenko_transfer(torch.from_numpy(slide[k : k + 1]), own.stain_matrix[k], own.max_concentrations[k], *target).numpy()
        assert np.array_equal(alone[0], per_patch[k])


def test_reinhard_per_slide_standardises_by_the_slides_statistics():
    slide = _one_slide(np.random.default_rng(23))
    source = estimate_stain(slide, "reinhard")
    reference = NumpyReinhardNormalizer()
    reference.fit(slide[0])
    spec = InputSpec(stain_normalisation="reinhard", stain_fit="slide",
                     stain_target=StainTarget(lab_means=reference.target_means.tolist(), lab_stds=reference.target_stds.tolist()))
    expected = reference.normalize(slide.reshape(-1, slide.shape[2], 3)).reshape(slide.shape)  # the slide as one image
    got = normalise_stain(torch.from_numpy(slide), bound_to_slide(spec, source)).numpy()
    assert np.abs(got.astype(int) - expected).max() <= TOLERANCE


def test_a_slide_without_an_estimate_is_refused_or_passed_through():
    slide = _one_slide(np.random.default_rng(24), n=2)
    spec = _macenko_spec().model_copy(update={"stain_fit": "slide"})
    with pytest.raises(ValueError, match="per slide"):
        normalise_stain(torch.from_numpy(slide), spec)  # never bound to its slide
    glass = np.full((3, 32, 32, 3), 242, np.uint8)
    assert estimate_stain(glass, "macenko") == StainTarget()  # too little stain: nothing to estimate
    assert np.array_equal(normalise_stain(torch.from_numpy(glass), bound_to_slide(spec, estimate_stain(glass, "macenko"))).numpy(), glass)


def test_the_sample_is_even_and_the_same_every_time():
    assert sample_indices(5).tolist() == [0, 1, 2, 3, 4]
    picked = sample_indices(1000, 5)
    assert picked.tolist() == [0, 250, 500, 749, 999] and sample_indices(1000, 5).tolist() == picked.tolist()


def test_reinhard_matches_the_reference_on_the_same_images(patches):
    reference = NumpyReinhardNormalizer()
    reference.fit(patches[0])
    means, stds = fit_reinhard(torch.from_numpy(patches[0]))
    assert means == pytest.approx(reference.target_means.tolist(), abs=1e-3)
    assert stds == pytest.approx(reference.target_stds.tolist(), abs=1e-3)
    expected = np.stack([reference.normalize(p) for p in patches])
    got = reinhard_normalise(torch.from_numpy(patches), torch.tensor(means), torch.tensor(stds)).numpy()
    assert np.abs(got.astype(int) - expected).max() <= TOLERANCE


def test_glass_passes_through_unchanged():
    glass = np.full((2, 32, 32, 3), 242, np.uint8)
    out = macenko_normalise(torch.from_numpy(glass), torch.tensor(REFERENCE_STAIN_MATRIX), torch.tensor(REFERENCE_MAX_CONCENTRATIONS))
    assert np.array_equal(out.numpy(), glass)


def _macenko_spec() -> InputSpec:
    return InputSpec(stain_normalisation="macenko",
                     stain_target=StainTarget(stain_matrix=[list(r) for r in REFERENCE_STAIN_MATRIX],
                                              max_concentrations=list(REFERENCE_MAX_CONCENTRATIONS)))


def test_manifest_requires_the_target_of_its_method(tmp_path: Path):
    with pytest.raises(ValueError, match="stain_target.stain_matrix"):
        InputSpec(stain_normalisation="macenko")
    with pytest.raises(ValueError, match="lab_means"):
        InputSpec(stain_normalisation="reinhard", stain_target=StainTarget(lab_means=[60, 10, -10]))
    with pytest.raises(ValueError, match="stain_source"):  # a slide's own stains are estimated by the app, never declared
        InputSpec.model_validate({**_macenko_spec().model_dump(), "stain_fit": "slide", "stain_source": {"lab_means": [1, 2, 3]}})
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.toml").write_text(
        'id = "m"\nname = "m"\ntask = "patch"\narchitecture = "patch_resnet"\nweights = "w.safetensors"\n'
        f'weights_sha256 = "{"0" * 64}"\nclass_names = ["a", "b"]\n[input]\nstain_normalisation = "vahadane"\n')
    with pytest.raises(ModelLoadError, match="stain_normalisation"):
        read_manifest(folder)


def test_model_input_normalises_on_the_device_as_declared(patches):
    spec = _macenko_spec()
    x = model_input(patches[:3], spec, torch.device("cpu"))
    assert x.shape == (3, 3, 128, 128) and x.dtype == torch.float32
    expected = normalise_stain(torch.from_numpy(patches[:3]), spec).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(x, expected)
    assert torch.equal(model_input(patches[:3], InputSpec(), torch.device("cpu")), torch.from_numpy(patches[:3]).permute(0, 3, 1, 2).float() / 255)


def test_a_macenko_model_scores_colour_shifted_patches_like_the_originals():
    """The same tissue (concentration fields) stained as two labs would: a model whose manifest declares Macenko
    scores both alike; the same net fitted to raw patches scores them apart."""
    rng = np.random.default_rng(11)
    original, shifted = [], []
    for _ in range(24):
        h, e = concentrations(rng, 96)
        original.append(render(h, e, rng))
        h_vec, e_vec, intensity = shifted_stain(rng)
        shifted.append(render(intensity * h, intensity * e, rng, h_vec, e_vec))
    spec, cpu = _macenko_spec(), torch.device("cpu")
    original, shifted = np.stack(original), np.stack(shifted)

    def colour_net(seen: torch.Tensor) -> torch.nn.Module:
        """A net that reads colour, as CNNs trained on one lab's slides do: logits from the patch's mean R, G, B,
        centred on the patches it was fitted to (``seen``, as its input declares them)."""
        net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 2)).eval()
        with torch.no_grad():
            net[2].weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [24.0, -40.0, 16.0]]))
            net[2].bias.zero_()
            net[2].bias[1] = -net(seen)[:, 1].mean()
        return net

    macenko_net = colour_net(model_input(original, spec, cpu))
    raw_net = colour_net(model_input(original, InputSpec(), cpu))
    with_norm = np.abs(classify_patches(macenko_net, cpu, original, 8, spec) - classify_patches(macenko_net, cpu, shifted, 8, spec))[:, 1]
    raw = np.abs(classify_patches(raw_net, cpu, original, 8) - classify_patches(raw_net, cpu, shifted, 8))[:, 1]
    assert with_norm.mean() <= 0.05  # per patch, on average (Macenko's haematoxylin-first rule can fail on a patch)
    slide_score = [classify_patches(macenko_net, cpu, x, 8, spec)[:, 1].mean() for x in (original, shifted)]
    assert abs(slide_score[0] - slide_score[1]) <= 0.05
    assert raw.mean() > 5 * with_norm.mean()
