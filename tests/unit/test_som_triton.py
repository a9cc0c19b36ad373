"""The fused Triton SOM kernel (``som_triton``) against the Adaptive Clusterer's host loop.

Without a GPU the kernel runs in Triton's interpreter. ``TRITON_INTERPRET=1`` has to be set before ``triton``
is first imported (``triton.jit`` reads it when it decorates, Triton's own library included) and while the
kernel runs; in a pytest process triton is already imported (anomalib imports it), and the variable would leak
into other tests. So one subprocess, started with the variable set, runs the kernel on every case below
(``backend="triton"``) and saves what it computed; the tests compare that here with the host NumPy loop. The
interpreter executes every step in Python, so the sizes are small (``k`` of a few hundred, ``C`` of 2 to 20).
The CUDA test at the paper size runs the compiled kernel in-process, only where a GPU is present.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from anomalib_vadproto.models.dlan_ac import AdaptiveClusterer

pytest.importorskip("triton")

# Runs in the subprocess: every case with backend="triton" through fit_batch, recording each kernel launch and
# the per-map weights (snapshots) it returned.
DRIVER = """
import sys
import torch
from anomalib_vadproto.models.dlan_ac import AdaptiveClusterer
from anomalib_vadproto.models.dlan_ac.som import triton_kernels

kernels = triton_kernels()
launches = []
launch = kernels.fit_maps
kernels.fit_maps = lambda *args: launches.append(launch(*args).clone()) or launches[-1]
results = {"interpreted": type(kernels._som_maps_kernel).__name__ == "InterpretedFunction"}
for name, case in torch.load(sys.argv[1]).items():
    som = AdaptiveClusterer(**case["options"], backend="triton")
    if case["weights"] is not None:
        som.weights.copy_(case["weights"])
    launches.clear()
    zs = som.fit_batch(case["maps"].transpose(1, 2).unsqueeze(-1))
    state = {key: value.clone() for key, value in som.state_dict().items()}
    results[name] = {"snapshots": launches[-1], "zs": zs, "state": state, "launches": len(launches)}
torch.save(results, sys.argv[2])
"""


def clustered_maps(num_maps: int, num_vectors: int, dim: int, num_clusters: int = 4, seed: int = 0) -> torch.Tensor:
    """``(B, N, C)`` unit-norm vectors around ``num_clusters`` random unit centres."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(num_clusters, dim, generator=g), dim=1)
    labels = torch.randint(0, num_clusters, (num_maps, num_vectors), generator=g)
    return F.normalize(centres[labels] + 0.15 * torch.randn(num_maps, num_vectors, dim, generator=g), dim=2)


SMALL = {"feature_dim": 12, "num_neurons": 6, "grid_rows": 2, "num_iterations": 100, "seed": 3}  # padded 8 x 16
HAND_WEIGHTS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
HAND_MAPS = torch.tensor([[[1.0, 0.0], [0.5, 0.45]], [[-1.0, 0.0], [0.0, -1.0]]])  # test_som.py's maps A and B


def build_cases() -> dict[str, dict]:
    cases = {}
    for neighbourhood in ("gaussian", "truncated"):
        for decay in ("asymptotic", "linear"):
            for order in ("cycle", "shuffle"):
                options = {**SMALL, "neighbourhood": neighbourhood, "decay": decay, "sample_order": order}
                cases[f"{neighbourhood}-{decay}-{order}"] = {
                    "options": options,
                    "weights": None,
                    "maps": clustered_maps(3, 24, 12),
                }
        cases[f"hand-{neighbourhood}"] = {
            "options": {"feature_dim": 2, "num_neurons": 4, "num_iterations": 1, "neighbourhood": neighbourhood},
            "weights": HAND_WEIGHTS,
            "maps": HAND_MAPS,
        }
    # The paper's 5x5 grid (L = 25, padded to 32) with C = 20 (padded to 32).
    cases["paper-grid"] = {
        "options": {"feature_dim": 20, "num_iterations": 120, "seed": 5},
        "weights": None,
        "maps": clustered_maps(2, 30, 20, num_clusters=6, seed=1),
    }
    return cases


CASES = build_cases()


@pytest.fixture(scope="module")
def kernel_results(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("som_triton")
    inputs, outputs = folder / "cases.pt", folder / "results.pt"
    torch.save(CASES, inputs)
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(inputs), str(outputs)], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return torch.load(outputs)


def host_results(case: dict) -> tuple[AdaptiveClusterer, list[torch.Tensor], list[int]]:
    som = AdaptiveClusterer(**case["options"], backend="host")
    if case["weights"] is not None:
        som.weights.copy_(case["weights"])
    weights, zs = [], []
    for x in case["maps"]:
        zs.append(som.fit_feature_map(x))
        weights.append(som.weights.clone())
    return som, weights, zs


def test_the_subprocess_ran_the_interpreted_kernel(kernel_results):
    assert kernel_results["interpreted"] is True


@pytest.mark.parametrize("name", [name for name in CASES if not name.startswith("hand")])
def test_kernel_equals_the_host_loop(kernel_results, name):
    """Weights after every map, each map's winners and z, the epoch statistics and the centre order."""
    case, result = CASES[name], kernel_results[name]
    host, host_weights, host_zs = host_results(case)
    for b, x in enumerate(case["maps"]):
        torch.testing.assert_close(result["snapshots"][b], host_weights[b], atol=1e-5, rtol=1e-5)
        # The winners of the map's N vectors (its z) with the weights after it.
        assert torch.equal(host._nearest(x, result["snapshots"][b]), host._nearest(x, host_weights[b]))
    assert result["zs"] == host_zs and min(host_zs) >= 2
    assert result["launches"] == 1  # the whole batch of maps in one launch
    state = result["state"]
    torch.testing.assert_close(state["weights"], host.weights, atol=1e-5, rtol=1e-5)
    for key in ("win_counts", "last_counts", "last_z", "num_maps", "z_sum", "m"):
        assert torch.equal(state[key], getattr(host, key)), key


@pytest.mark.parametrize(
    ("neighbourhood", "expected_zs", "expected_m"), [("truncated", [1, 2], 1), ("gaussian", [2, 2], 2)]
)
def test_kernel_counts_m_by_hand(kernel_results, neighbourhood, expected_zs, expected_m):
    """``test_som.py``'s hand-checked 2x2 case: winner-only leaves z = 1 on map A, the Gaussian pulls
    neuron 1 to c1 = (g, 1 − g), g = 0.5 e⁻², nearer to (0.5, 0.45), so z = 2."""
    result = kernel_results[f"hand-{neighbourhood}"]
    assert result["zs"] == expected_zs and int(result["state"]["m"]) == expected_m
    g = 0.5 * math.exp(-2)
    after_a = result["snapshots"][0]
    if neighbourhood == "gaussian":
        torch.testing.assert_close(after_a[1], torch.tensor([g, 1 - g]))
    else:
        torch.testing.assert_close(after_a, HAND_WEIGHTS)


@pytest.mark.parametrize("truncated", [False, True])
@pytest.mark.parametrize(("arch", "dim"), [(90, 512), (80, 128)])
def test_kernel_compiles_for_the_gpu_without_spills(truncated, arch, dim, tmp_path):
    """Compile (not run) the kernel for an H100/H200 (sm_90) and an A100 (sm_80), as ``fit_maps`` launches it at
    the paper and lite sizes: no GPU is needed to build it, and the weights must stay in registers (no local
    memory in the PTX). The interpreter above cannot catch compile-only errors."""
    import triton
    import triton.backends.nvidia
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from anomalib_vadproto.models.dlan_ac import som_triton

    if type(som_triton._som_maps_kernel).__name__ == "InterpretedFunction":
        pytest.skip("TRITON_INTERPRET is set in this process")
    pointers = ("weights", "features", "index", "rate", "coef", "radius2", "snapshots")
    signature = {f"{name}_ptr": "*i32" if name == "index" else "*fp32" for name in pointers}
    signature |= {"num_maps": "i32", "num_vectors": "i32", "num_iterations": "i32"}
    constants = {"L": 25, "C": dim, "COLS": 5, "TRUNCATED": truncated, "BLOCK_L": 32, "BLOCK_C": dim}
    signature |= dict.fromkeys(constants, "constexpr")
    names = list(signature)
    source = ASTSource(
        fn=som_triton._som_maps_kernel,
        signature=signature,
        constexprs={(names.index(name),): value for name, value in constants.items()},
    )
    options = {"num_warps": som_triton.num_warps_for(25, dim), "num_stages": 1}
    kernel = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
    assert kernel.metadata.num_warps == (16 if dim == 512 else 4)
    assert "ld.local" not in kernel.asm["ptx"] and "st.local" not in kernel.asm["ptx"]
    # Register spills show in the cubin's resource usage (ptxas), not in the PTX.
    cuobjdump = Path(triton.backends.nvidia.__file__).parent / "bin" / "cuobjdump"
    if not cuobjdump.is_file():
        pytest.skip("no cuobjdump in triton's NVIDIA backend to read the register use")
    cubin = tmp_path / "som.cubin"
    cubin.write_bytes(kernel.asm["cubin"])
    usage = subprocess.run([str(cuobjdump), "--dump-resource-usage", str(cubin)], capture_output=True, text=True)
    assert "REG:" in usage.stdout and "STACK:0 " in usage.stdout and "LOCAL:0 " in usage.stdout, usage.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("neighbourhood", ["gaussian", "truncated"])
def test_compiled_kernel_on_cuda_equals_the_host_loop_at_the_paper_size(neighbourhood):
    """L = 25, C = 512, N = 1024, k = 5000: the compiled kernel (auto backend on CUDA) against the NumPy loop."""
    maps = clustered_maps(2, 1024, 512, num_clusters=8, seed=2)
    host = AdaptiveClusterer(neighbourhood=neighbourhood, backend="host")
    zs = [host.fit_feature_map(x) for x in maps]
    gpu = AdaptiveClusterer(neighbourhood=neighbourhood).cuda()
    assert gpu.uses_triton()
    assert gpu.fit_batch(maps.transpose(1, 2).reshape(2, 512, 32, 32).cuda()) == zs
    torch.testing.assert_close(gpu.weights.cpu(), host.weights, atol=1e-4, rtol=1e-4)
    assert torch.equal(gpu.win_counts.cpu(), host.win_counts)
