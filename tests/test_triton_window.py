"""The fused Triton top-k kernels against `fast`'s PyTorch paths and the reference propagator.

Without CUDA the kernels run in Triton's interpreter (on CPU tensors), which is slow: grids,
feature sizes and context lengths are kept small. Selections are checked tie-proof: the values
must equal the PyTorch path's in fp32, and every pick must be a distinct admissible candidate
(in the query's disk, in an active frame) whose fp32 score is its value.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip(
        "without a GPU the kernels run in Triton's interpreter, which must be chosen before "
        "triton is imported: tests/conftest.py sets TRITON_INTERPRET=1",
        allow_module_level=True,
    )
pytest.importorskip("triton")

import torch.nn.functional as F

from hvc_runtime.propagation import DensePropagator, FastPropagator, PropagationConfig
from hvc_runtime.propagation.fast import long_term_topk, windowed_topk
from hvc_runtime.propagation.slots import SlotStore
from hvc_runtime.propagation.triton_window import (
    _frame_groups,
    _long_term_tile,
    programs_per_sm,
    triton_long_term_topk,
    triton_windowed_topk,
    unique_windowed_topk,
)
from hvc_runtime.propagation.window import _largest_square_inside, tile_windows
from tests.test_fast_propagation import assert_same, blobs, drifting_features, run

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ROOT = Path(__file__).resolve().parents[1]


def unit_features(dim, cells, generator, dtype, flat=False):
    """[D, cells] L2-normalised features; `flat`: one feature repeated, so every score ties."""
    features = F.normalize(torch.randn(dim, 1 if flat else cells, generator=generator), dim=0)
    return features.expand(dim, cells).to(DEVICE, dtype)


def context(height, width, radius, tile, frames, dim, seed, dtype=torch.float32, flat=False):
    """Query features [D, hw], the slot tensor of `frames` context frames, and the geometry."""
    generator = torch.Generator().manual_seed(seed)
    windows = tile_windows(height, width, radius, tile, DEVICE)
    store = SlotStore(windows, frames)
    for t in range(frames):
        store.hold(t, unit_features(dim, height * width, generator, dtype, flat))
    query = unit_features(dim, height * width, generator, dtype)
    return query, store.features, windows


def assert_valid_picks(values, flat, query, keys, admissible, expected):
    """Values equal `expected`; each finite pick is a distinct admissible candidate (keys: its
    [N, D] features, admissible: [hw, N]) whose fp32 score is its value."""
    torch.testing.assert_close(values, expected, atol=1e-5, rtol=0)
    finite = values.isfinite()
    assert admissible.gather(1, flat)[finite].all()
    scores = (query.float().T[:, None, :] * keys.float()[flat]).sum(-1)
    torch.testing.assert_close(scores[finite], values[finite], atol=1e-5, rtol=0)
    placeholders = -1 - torch.arange(flat.numel(), device=flat.device).view(flat.shape)
    ordered = torch.where(finite, flat, placeholders).sort(dim=1).values
    assert (ordered[:, 1:] != ordered[:, :-1]).all(), "a candidate was picked twice"


def check_windowed(query, slots, windows, radius, multiplicity, k, frame_groups=None):
    """`unique_windowed_topk` against `windowed_topk` in fp32 with every active frame once."""
    values, flat = unique_windowed_topk(query, slots, multiplicity, windows, k, frame_groups)
    assert values.dtype == torch.float32
    once = [min(count, 1) for count in multiplicity]
    expected, _ = windowed_topk(query.float(), slots.float(), once, windows, k)
    height, width, margin = windows.height, windows.width, windows.margin
    positions = height * width
    keys = slots[margin : margin + height, margin : margin + width].permute(2, 0, 1, 3)
    cell = torch.arange(positions, device=DEVICE)
    dy = cell[None] // width - cell[:, None] // width
    dx = cell[None] % width - cell[:, None] % width
    disk = dy**2 + dx**2 <= _largest_square_inside(radius)  # [hw, hw]
    active = torch.tensor(once, dtype=torch.bool, device=DEVICE)
    admissible = (active[:, None, None] & disk[None]).permute(1, 0, 2).reshape(positions, -1)
    unique_k = values.shape[1]
    assert_valid_picks(
        values, flat, query, keys.reshape(-1, query.shape[0]), admissible, expected[:, :unique_k]
    )


GEOMETRY = ("height", "width", "radius", "tile", "multiplicity", "dim", "k")
GEOMETRIES = [
    pytest.param(5, 7, 2.5, 4, [1, 1, 1], 16, 15, id="small"),
    pytest.param(5, 7, 30.0, 3, [2, 1], 16, 15, id="radius-beyond-grid"),
    pytest.param(2, 3, 1.0, 8, [1, 3], 16, 15, id="fewer-candidates-than-k"),
    pytest.param(9, 11, 4.0, 8, [50, 0, 2, 7], 40, 15, id="duplicates-absent-dim40"),
    pytest.param(6, 9, 2.0, 3, [0, 1, 0], 16, 5, id="one-frame-k5"),
    pytest.param(7, 6, 3.0, 5, [1, 1], 16, 20, id="tile5-k20"),
    pytest.param(4, 5, 2.0, 4, [3, 1], 200, 1, id="k1-dim200"),
]


@pytest.mark.parametrize(GEOMETRY, GEOMETRIES)
def test_unique_candidates_match_windowed_topk(height, width, radius, tile, multiplicity, dim, k):
    query, slots, windows = context(height, width, radius, tile, len(multiplicity), dim, seed=k)
    check_windowed(query, slots, windows, radius, multiplicity, k)


@pytest.mark.parametrize(GEOMETRY, GEOMETRIES)
def test_drop_in_for_windowed_topk(height, width, radius, tile, multiplicity, dim, k):
    query, slots, windows = context(height, width, radius, tile, len(multiplicity), dim, seed=k)
    values, flat = triton_windowed_topk(query, slots, multiplicity, windows, k)
    expected_values, expected_flat = windowed_topk(query, slots, multiplicity, windows, k)
    assert values.shape == flat.shape == expected_values.shape
    torch.testing.assert_close(values, expected_values, atol=1e-5, rtol=0)
    real = expected_values.isfinite()  # random features: no ties, the same picks in order
    assert torch.equal(flat[real], expected_flat[real])


@pytest.mark.parametrize("groups", [2, 3])
def test_frame_groups_merge_to_the_same_candidates(groups):
    multiplicity = [1, 4, 1, 0, 2]
    query, slots, windows = context(6, 7, 2.5, 4, len(multiplicity), 16, seed=groups)
    check_windowed(query, slots, windows, 2.5, multiplicity, 15, frame_groups=groups)


@pytest.mark.parametrize(
    ("dtype", "dim"),
    [
        (torch.float32, 256),  # longer than one dot: D in chunks
        (torch.float16, 1280),
        (torch.float16, 40),
        (torch.bfloat16, 256),
    ],
)
def test_feature_sizes_and_half_precision_rank_fp32_scores(dtype, dim):
    """Half features are scored in fp32 (tensor-core accumulation), never rounded back: the
    values are `windowed_topk`'s on the same features cast to fp32."""
    query, slots, windows = context(3, 4, 2.0, 4, 2, dim, seed=dim, dtype=dtype)
    check_windowed(query, slots, windows, 2.0, [2, 1], 15)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_exact_ties_are_neither_lost_nor_duplicated(dtype):
    query, slots, windows = context(7, 8, 2.5, 4, 3, 16, seed=5, dtype=dtype, flat=True)
    check_windowed(query, slots, windows, 2.5, [1, 1, 2], 15)


@pytest.mark.parametrize(
    ("dtype", "dim", "positions", "k", "flat"),
    [
        (torch.float32, 16, 150, 15, False),
        (torch.float32, 40, 6, 15, False),  # fewer cells than k
        (torch.bfloat16, 256, 70, 5, False),
        (torch.float16, 16, 90, 15, True),  # every score ties
    ],
)
def test_long_term_matches_long_term_topk(dtype, dim, positions, k, flat):
    generator = torch.Generator().manual_seed(dim)
    query = unit_features(dim, positions, generator, dtype)
    keys = unit_features(dim, positions, generator, dtype, flat)
    values, cells = triton_long_term_topk(query, keys.T.contiguous(), k)
    expected, _ = long_term_topk(query.float(), keys.float(), k)
    everywhere = torch.ones(positions, positions, dtype=torch.bool, device=DEVICE)
    assert_valid_picks(values, cells, query, keys.T, everywhere, expected)


@pytest.mark.parametrize("radius", [0.5, 1.0, 2.5, 3.0, 30.0])
def test_disk_bound_selects_the_radius_pairs_inside_the_grid(radius):
    bound = tile_windows(9, 13, radius, 4, DEVICE).disk_bound.item()
    offsets = torch.arange(-12, 13)
    squares = (offsets[:, None] ** 2 + offsets[None, :] ** 2)[4:-4].flatten()  # |dy| ≤ 8
    assert torch.equal(squares <= bound, squares <= _largest_square_inside(radius))


def test_occupancy_from_registers_and_shared_memory():
    """The sm_90 compiles: fp16 with Triton 3.8 (128 registers, 64 KiB) fits two programs of
    8 warps, with Triton 3.6 (148) one, fp32 (169) one."""
    assert programs_per_sm(128, 65536) == 2 and programs_per_sm(148, 65536) == 1
    assert programs_per_sm(169, 32768) == 1 and programs_per_sm(64, 160 * 1024) == 1
    assert programs_per_sm(32, 0) == 8


def test_launches_fill_one_wave_without_a_tail():
    """An H100 (132 SMs) at 480p: 112 tiles of 8×8 and 6,480 long-term queries."""
    assert _frame_groups(132 * 2, 112, 50) == 2  # fp16: two programs per SM
    assert _frame_groups(132, 112, 50) == 1  # fp32: 1 program per SM, 2 groups = 2 waves
    assert _frame_groups(132 * 2, 112, 1) == 1 and _frame_groups(1, 112, 50) == 1
    assert _long_term_tile(132 * 2, 6480) == 32  # 203 programs of 32 fill one wave
    assert _long_term_tile(132, 6480) == 64  # 101 of 64: as fast as two waves of 32


def test_fast_propagator_with_the_kernels_equals_the_reference():
    cfg = PropagationConfig(context_size=6, topk=5, radius=2.5)
    height, width = 9, 10
    features = [f.to(DEVICE) for f in drifting_features(12, 16, height, width, seed=3)]
    background = torch.ones(1, height, width)
    objects = blobs(2, height, width, seed=1)
    given = {0: torch.cat([(background - objects.sum(0)).clamp(min=0), objects]).to(DEVICE)}
    reference = run(DensePropagator(cfg), features, given)
    fused = FastPropagator(cfg, tile=8, kernel="triton")
    assert_same(reference, run(fused, features, given))
    assert fused.uses_triton(features[0]) and not FastPropagator(cfg).uses_triton(features[0].cpu())


AOT_COMPILE = textwrap.dedent(
    """
    import re, subprocess, tempfile, torch, triton
    from triton.backends.compiler import GPUTarget
    from hvc_runtime.propagation.triton_window import _topk_kernel, kernel_meta, programs_per_sm

    TYPES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
    for dtype, dim, tile_h, tile_w, disk in [
        (torch.float16, 256, 8, 8, True),  # windowed, one dot: tensor cores
        (torch.float32, 1280, 1, 64, False),  # long-term, D in chunks, IEEE fp32
    ]:
        # as a launch specialises: aligned pointers and strides, unit channel stride
        constexprs = dict(kernel_meta(dim, 15, tile_h, tile_w, dtype), DISK=disk, key_stride_d=1)
        pointers = {"query_ptr": TYPES[dtype], "keys_ptr": TYPES[dtype], "active_ptr": "i32",
                    "disk_ptr": "i32", "values_ptr": "fp32", "flat_ptr": "i64"}
        names = _topk_kernel.arg_names
        signature = {n: "constexpr" if n in constexprs else "*" + pointers[n] if n in pointers
                     else "i32" for n in names}
        aligned = [*pointers, "key_stride_y", "key_stride_x", "key_stride_slot"]
        attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in aligned}
        source = triton.compiler.ASTSource(_topk_kernel, signature, constexprs, attrs)
        kernel = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": 8})
        assert kernel.asm["cubin"], "no sm_90 binary"
        assert ("wgmma" in kernel.asm["ptx"]) == (dtype != torch.float32), "tensor-core use"
        # registers and shared memory decide how many programs share an SM
        with tempfile.NamedTemporaryFile("w", suffix=".ptx") as ptx:
            ptx.write(kernel.asm["ptx"])
            ptx.flush()
            report = subprocess.run([triton.knobs.nvidia.ptxas.path, "-v", "--gpu-name", "sm_90a",
                                     ptx.name, "-o", "/dev/null"], capture_output=True, text=True)
        registers = int(re.search(r"Used (\\d+) registers", report.stderr + report.stdout)[1])
        assert " 0 bytes spill stores" in report.stderr + report.stdout, "register spills"
        programs = programs_per_sm(registers, kernel.metadata.shared)
        print(dtype, dim, registers, "registers", kernel.metadata.shared, "B shared", programs)
        assert programs * registers * 32 * 8 <= 65536 and registers <= 255, (dtype, registers)
    """
)


@pytest.mark.skipif(torch.cuda.is_available(), reason="launches on the GPU compile it anyway")
def test_kernel_compiles_for_h100():
    """Ahead-of-time PTX and cubin for sm_90 catch code that only the interpreter accepts. A
    fresh process: this one runs Triton interpreted."""
    import triton
    from triton.backends import backends

    if "nvidia" not in backends:
        pytest.skip("Triton has no NVIDIA backend here")
    try:
        triton.knobs.nvidia.ptxas  # noqa: B018 (raises when the assembler is missing)
    except RuntimeError as missing:
        pytest.skip(f"no PTX assembler: {missing}")
    environment = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, "-c", AOT_COMPILE],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    print(result.stdout)  # registers per thread of each variant (pytest -s shows them)
