import os

import numpy as np
import pytest
from hypothesis import settings

# CI explores the same examples every run (a failure there is reproducible); locally
# hypothesis keeps searching new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

import nnkit
from nnkit.backends import backend_status

# One list: every usable backend gets the whole suite (cupy joins where a GPU is usable).
BACKENDS = nnkit.available_backends()
CPU_BACKENDS = [b for b in BACKENDS if nnkit.get_backend(b).device() == "cpu"]


def _gpu_reason():
    ok, why = backend_status("cupy")
    return None if ok else f"no usable GPU: {why.splitlines()[0] if why else 'cupy unusable'}"


def pytest_collection_modifyitems(config, items):
    reason = _gpu_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
