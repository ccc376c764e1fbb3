"""The fast propagator against the reference on generated features: the same soft labels."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hvc_runtime.propagation import DensePropagator, FastPropagator, PropagationConfig
from hvc_runtime.propagation.fast import windowed_topk
from hvc_runtime.propagation.numerics import fast_score_matmul, half_aware_matmul, score_matmul
from hvc_runtime.propagation.ranking import expand_multiplicity
from hvc_runtime.propagation.window import tile_windows, within_radius


def drifting_features(frames, dim, height, width, seed, dtype=torch.float32):
    """Unit features of a slowly changing scene, so neighbours compete inside the windows."""
    generator = torch.Generator().manual_seed(seed)
    scene = torch.randn(dim, height, width, generator=generator)
    clip = []
    for _ in range(frames):
        scene = scene + 0.3 * torch.randn(dim, height, width, generator=generator)
        clip.append(F.normalize(scene, dim=0).to(dtype))
    return clip


def blobs(ids, height, width, seed):
    """Soft label maps of `ids` rectangles over a background channel (first frame style)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.zeros(ids, height, width)
    for channel in range(ids):
        y, x = torch.randint(0, height, (2,), generator=generator).tolist()
        labels[channel, y : y + 4, x : x + 6] = 1.0
    return labels


def run(propagator, features, given):
    return [propagator.step(f, given.get(t)) for t, f in enumerate(features)]


def assert_same(reference, fast, atol=1e-5):
    for t, (r, f) in enumerate(zip(reference, fast, strict=True)):
        torch.testing.assert_close(f, r, atol=atol, rtol=0, msg=f"frame {t}")
        assert torch.equal(f.argmax(0), r.argmax(0)), f"frame {t}"


@pytest.mark.parametrize(
    ("cfg", "grid", "frames", "tile", "group"),
    [
        # official settings through the duplicated early context into a full one
        (PropagationConfig(), (18, 27), 56, 8, 1),
        (PropagationConfig(), (18, 27), 56, 8, 3),  # tiles batched, as on GPUs
        (PropagationConfig(context_size=6, topk=5, radius=2.5), (11, 13), 12, 3, 1),
        (PropagationConfig(context_size=6, topk=5, radius=2.5), (11, 13), 12, 3, 100),
        (PropagationConfig(context_size=4, radius=4, pad_context=False), (9, 20), 10, 1, 1),
        (PropagationConfig(context_size=5, topk=15, radius=1.0), (2, 3), 8, 8, 1),  # hw < k
        (PropagationConfig(context_size=0), (10, 12), 5, 4, 2),
        (PropagationConfig(context_size=3, soft_labels=False), (12, 16), 8, 5, 1),
    ],
)
def test_fast_equals_reference(cfg, grid, frames, tile, group):
    height, width = grid
    features = drifting_features(frames, 16, height, width, seed=frames)
    background = torch.ones(1, height, width)
    objects = blobs(2, height, width, seed=1)
    first = torch.cat([(background - objects.sum(0)).clamp(min=0), objects])
    given = {0: first}
    reference = run(DensePropagator(cfg), features, given)
    fast = run(FastPropagator(cfg, tile=tile, tile_group=group), features, given)
    assert_same(reference, fast)


def test_late_objects_and_more_than_20_ids_match():
    cfg = PropagationConfig(context_size=8)
    height, width = 16, 24
    features = drifting_features(14, 16, height, width, seed=2)
    first = blobs(25, height, width, seed=3)
    given = {0: first, 4: blobs(3, height, width, seed=4), 9: blobs(1, height, width, seed=5)}
    reference_prop, fast_prop = DensePropagator(cfg), FastPropagator(cfg, tile=6)
    assert_same(run(reference_prop, features, given), run(fast_prop, features, given))
    assert len(fast_prop.references) == 3
    assert fast_prop.num_channels == 29
    store = fast_prop.references[0].store  # one feature store for all three references
    assert all(ref.store is store for ref in fast_prop.references)
    assert store.features.shape[2] <= cfg.context_size


# bf16 keeps 8 mantissa bits: many scores tie exactly, and tie order is free in both top-ks
@pytest.mark.parametrize(("dtype", "minimum"), [(torch.float16, 0.995), (torch.bfloat16, 0.97)])
def test_half_precision_matches_the_reference(dtype, minimum):
    cfg = PropagationConfig(context_size=10)
    height, width = 16, 24
    features = drifting_features(14, 32, height, width, seed=6, dtype=dtype)
    given = {0: blobs(3, height, width, seed=7)}
    reference = run(DensePropagator(cfg), features, given)
    fast = run(FastPropagator(cfg), features, given)
    # scores round to the same dtype, but the two matrix products may sum in another order:
    # one-ulp score differences move soft labels a little and argmax almost never
    agreement = torch.stack(
        [(r.argmax(0) == f.argmax(0)).float().mean() for r, f in zip(reference, fast, strict=True)]
    )
    assert agreement.mean() >= minimum


def test_memory_holds_at_most_the_context():
    cfg = PropagationConfig(context_size=5)
    features = drifting_features(30, 8, 6, 7, seed=8)
    prop = FastPropagator(cfg)
    for t, f in enumerate(features):
        prop.step(f, torch.ones(1, 6, 7) if t == 0 else None)
        memory = prop.references[0]
        assert len(memory.labels) <= cfg.context_size + 1
        assert memory.store.features.shape[2] <= cfg.context_size
        assert set(memory.features) == {0}  # only the long-term frame is kept unpadded


def test_expand_multiplicity_repeats_candidates_in_rank_order():
    values = torch.tensor([[0.9, 0.8, 0.7, 0.1]])
    flat = torch.tensor([[10, 11, 12, 13]])
    multiplicity = torch.tensor([[2, 0, 3, 1]])
    got_values, got_flat = expand_multiplicity(values, flat, multiplicity, 5)
    torch.testing.assert_close(got_values, torch.tensor([[0.9, 0.9, 0.7, 0.7, 0.7]]))
    assert got_flat.tolist() == [[10, 10, 12, 12, 12]]
    short_values, _ = expand_multiplicity(values, flat, multiplicity, 8)
    assert short_values[0, -1] == float("-inf")  # only 6 candidates exist


def test_references_in_quick_succession_share_a_bounded_store():
    """New objects at consecutive frames with a short context: every reference frame's context
    is different, and the shared store must free and reuse slots in the right order."""
    cfg = PropagationConfig(context_size=3, topk=4)
    height, width = 9, 11
    features = drifting_features(12, 8, height, width, seed=9)
    given = {t: blobs(1, height, width, seed=10 + t) for t in (0, 1, 2, 5, 6)}
    reference_prop, fast_prop = DensePropagator(cfg), FastPropagator(cfg, tile=4)
    assert_same(run(reference_prop, features, given), run(fast_prop, features, given))
    assert fast_prop.references[0].store.features.shape[2] <= cfg.context_size


@pytest.mark.parametrize("radius", [0.1, 1.0, 2.5, 12.0, math.nextafter(12.0, 0.0), 145**0.5])
def test_radius_test_matches_float64_square_roots(radius):
    offsets = torch.arange(-20, 21)
    dy, dx = offsets[:, None], offsets[None, :]
    expected = (dy**2 + dx**2).double().sqrt() < radius
    assert torch.equal(within_radius(dy, dx, radius), expected)


def test_a_triton_kernel_that_fails_to_build_falls_back_once(monkeypatch):
    """With kernel="auto", a GPU on which the fused kernel cannot compile gets the PyTorch
    kernels (and one warning), not a failed video; kernel="triton" reports the failure."""
    from hvc_runtime.utils.errors import HvcWarning

    def unbuildable(self, *args):
        raise RuntimeError("PTX was compiled with an unsupported toolchain")

    monkeypatch.setattr(FastPropagator, "_triton_topk", unbuildable)
    monkeypatch.setattr(FastPropagator, "uses_triton", lambda self, query: not self._triton_failed)
    cfg = PropagationConfig(context_size=4, topk=5, radius=2.5)
    features = drifting_features(6, 16, 9, 10, seed=4)
    given = {0: blobs(2, 9, 10, seed=1)}
    with pytest.warns(HvcWarning, match="using the PyTorch kernels") as caught:
        fast = run(FastPropagator(cfg), features, given)
    assert len(caught) == 1
    assert_same(run(DensePropagator(cfg), features, given), fast)
    with pytest.raises(RuntimeError, match="unsupported toolchain"):
        run(FastPropagator(cfg, kernel="triton"), features, given)


def test_tiles_shared_between_threads_rank_as_one_thread_does():
    cfg = PropagationConfig(context_size=6)
    features = drifting_features(10, 16, 20, 28, seed=8)
    given = {0: blobs(2, 20, 28, seed=9)}
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, 3):  # one thread; three, each scoring a share of the tiles
            torch.set_num_threads(count)
            with torch.inference_mode():  # thread-local: the workers must run in it too
                results.append(run(FastPropagator(cfg, tile=4), features, given))
    finally:
        torch.set_num_threads(threads)
    assert_same(*results)


def test_fast_score_matmul_is_score_matmul():
    generator = torch.Generator().manual_seed(3)
    a, b = torch.randn(70, 33, generator=generator), torch.randn(50, 33, generator=generator)
    expected = score_matmul(a, b.T, torch.float32)
    torch.testing.assert_close(fast_score_matmul(a, b.T, torch.float32), expected)
    torch.testing.assert_close(fast_score_matmul(a[::2], b[:7].T, torch.float32), expected[::2, :7])
    half = fast_score_matmul(a.bfloat16(), b.T.bfloat16(), torch.float32)  # fp32 ranking
    assert half.dtype == torch.float32
    assert fast_score_matmul(a.requires_grad_(), b.T, torch.float32).grad_fn is not None


def test_bf16_products_round_as_a_half_gemm_does():
    """fp32 accumulation rounded to bf16 once, whether the CPU has bf16 instructions or not."""
    generator = torch.Generator().manual_seed(4)
    a = torch.randn(64, 256, generator=generator).bfloat16()
    b = torch.randn(256, 48, generator=generator).bfloat16()
    got = half_aware_matmul(a, b)
    assert got.dtype == torch.bfloat16
    expected = (a.float() @ b.float()).bfloat16().float()
    # other summation orders may round to the neighbouring bf16 value, never further
    torch.testing.assert_close(got.float(), expected, rtol=2**-7, atol=1e-6)


def test_top_k_gradients_with_three_threads_equal_one_threads():
    """Autograd's in-place writes are not thread-safe, so a graph is built on one thread only;
    the gradients equal one thread's."""
    windows = tile_windows(9, 11, 3.0, 4, torch.device("cpu"))
    generator = torch.Generator().manual_seed(3)
    query = torch.randn(8, 9 * 11, generator=generator)
    slots = torch.randn(*windows.padded_key_shape, 3, 8, generator=generator)
    threads = torch.get_num_threads()
    grads = []
    try:
        for count in (1, 3):
            torch.set_num_threads(count)
            leaf = query.clone().requires_grad_()
            values, _ = windowed_topk(leaf, slots, [1, 2, 1], windows, k=5)
            values.square().sum().backward()
            grads.append(leaf.grad)
    finally:
        torch.set_num_threads(threads)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=0)


@pytest.mark.parametrize("radius", [0.0, 0.5, 1.0, 2.5, 5.0, 12.0])
@pytest.mark.parametrize("tile", [1, 3, 8])
def test_row_bands_cover_every_disk_pair_and_skip_some_others(radius, tile):
    """Each pair inside a query's disk lies in a band (key rows, query columns, key columns);
    the fast mode leaves every other score unwritten, so a missed pair would be lost silently."""
    windows = tile_windows(40, 40, radius, tile, torch.device("cpu"))
    side, margin = tile + 2 * windows.margin, windows.margin
    covered = torch.zeros(side, side, tile * tile, dtype=torch.bool)  # [a, b, query]
    for a0, a1, q0, q1, c0, c1 in windows.row_bands:
        covered[a0:a1, c0:c1, q0:q1] = True
    a, b = torch.arange(side)[:, None, None], torch.arange(side)[None, :, None]
    query = torch.arange(tile * tile)[None, None, :]
    dy, dx = a - margin - query // tile, b - margin - query % tile
    disk = within_radius(dy, dx, radius)
    assert covered[disk].all()
    if windows.margin > 1:
        assert covered.sum() < side * side * tile * tile
