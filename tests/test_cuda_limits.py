"""raw_kernel_fits (backends/_cuda_limits.py): which networks the generated one-thread
kernels may train, and (where NVRTC is installed) one real compile through the helpers
of ci/cuda_check.py (backends/_nvrtc.py)."""
import itertools

import pytest

from nnkit.backends import _cuda_codegen as cg
from nnkit.backends._cuda_limits import raw_kernel_fits

DTYPES = ["float32", "float64"]


def test_the_or_gate_fits_in_both_dtypes():
    for dtype in DTYPES:
        assert raw_kernel_fits([2, 2, 1], 4, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_networks_and_many_rows_do_not_fit(dtype):
    assert not raw_kernel_fits([784, 128, 10], 64, dtype)
    assert not raw_kernel_fits([2, 16, 16, 1], 64, dtype)   # 18.7 KB stack frame measured
    assert not raw_kernel_fits([2, 8, 8, 1], 4, "float64")  # spills 1.1-1.8 KB measured
    assert not raw_kernel_fits([2, 1], 10_000, dtype)


def test_float64_never_fits_where_float32_does_not():
    for sizes in ([2, 1], [2, 4, 1], [3, 8, 2], [2, 6, 6, 1]):
        for n in range(1, 40):
            assert raw_kernel_fits(sizes, n, "float32") or not raw_kernel_fits(sizes, n, "float64")


@pytest.mark.parametrize("dtype", DTYPES)
def test_bigger_never_fits_where_smaller_does_not(dtype):
    """Widening any layer, appending a layer as wide as the output, or adding rows never
    turns 'no' into 'yes'."""
    widths = [1, 2, 3, 4, 6, 8, 12, 16]
    for depth in (2, 3, 4):
        for sizes in itertools.product(widths, repeat=depth):
            for n in (1, 2, 3, 4, 8, 16, 32, 64):
                if raw_kernel_fits(sizes, n, dtype):
                    continue
                assert not raw_kernel_fits(sizes, n + 1, dtype)
                assert not raw_kernel_fits(sizes + (sizes[-1],), n, dtype)
                for k in range(depth):
                    grown = sizes[:k] + (sizes[k] + 1,) + sizes[k + 1:]
                    assert not raw_kernel_fits(grown, n, dtype)


def _nvrtc_or_skip():
    from nnkit.backends import _nvrtc
    if not _nvrtc.available():
        pytest.skip("NVRTC not installed (pip install 'nvidia-cuda-nvrtc-cu12==12.*'; "
                    "ci/cuda_check.sh does)")
    return _nvrtc


def test_nvrtc_compiles_a_fit_kernel_and_an_elementwise_kernel():
    nv = _nvrtc_or_skip()
    fit = cg.fit_source([2, 2, 1], ("sigmoid", "linear"), "binary_crossentropy", 4, "float64")
    name, in_params, out_params, operation = cg.elementwise_kernels()[0]
    ew = nv.elementwise_source(name, in_params, out_params, operation, "float32")
    for source, entry in ((fit, "nnkit_fit"), (ew, name)):
        ptx = nv.compile_ptx(source, "compute_80")
        assert f".entry {entry}(" in ptx
        ptxas = nv.find_ptxas()
        if ptxas:
            usage = nv.ptxas_usage(ptx, "sm_80", ptxas)
            assert usage["spill_stores"] == usage["spill_loads"] == 0, usage
    bad = nv.elementwise_source(name, in_params, out_params, operation + "; undeclared",
                                "float32")
    with pytest.raises(nv.NVRTCError, match="undeclared"):
        nv.compile_ptx(bad, "compute_80")


def test_importing_nnkit_does_not_load_nvrtc():
    import subprocess
    import sys
    code = ("import sys, nnkit; nnkit.get_backend('numpy'); "
            "assert 'nnkit.backends._nvrtc' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
