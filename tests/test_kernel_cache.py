"""The numba kernel cache trusts nothing it did not write: generated kernels are imported
only from a folder of this user's that no one else can write (else a private temp folder),
only after their text is checked (a planted, corrupt or truncated file is rewritten, a
symlink or someone else's file is never read), and a corrupt numba cache entry is
recompiled, for generated and hand-written kernels alike.

Kernels load in subprocesses (fresh interpreters: a process keeps the modules it loaded).
One tiny network's kernel is compiled once per module (``seed``) and copied per test."""
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import numpy as np
import pytest

pytest.importorskip("numba")

import nnkit  # noqa: E402
from nnkit.backends import _numba_codegen  # noqa: E402
from nnkit.backends._numba_codegen import cache_dir_and_reason  # noqa: E402

OTHER_UID = 65534  # nobody
as_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                             reason="giving a file to another user needs root")

TRAIN = """
import json
import nnkit
from nnkit.backends import get_backend
from nnkit.backends._numba_codegen import cache_dir_and_reason
X, Y = nnkit.datasets.xor_gate()
net = nnkit.Network([nnkit.Dense(2, 3, activation="tanh"),
                     nnkit.Dense(3, 1, activation="sigmoid")],
                    loss="mse", dtype="float64", seed=0, backend="{backend}")
with get_backend("{backend}").use_path("{path}") as record:
    hist = net.fit(X, Y, epochs=20, lr=0.5)
print(json.dumps({{"loss": [float(v) for v in hist.loss], "ran": record.ran,
                  "folder": cache_dir_and_reason()}}))
"""

SGD = """
import json
import numpy as np
from nnkit.backends import get_backend
W, b = np.ones((2, 2)), np.ones(2)
get_backend("numba").sgd_update([(W, b)], [(np.full((2, 2), 2.0), np.full(2, 3.0))], 0.5)
print(json.dumps({"W": W.tolist(), "b": b.tolist()}))
"""


def _run(code, cache, numba_cache=None):
    """Run ``code`` in a fresh interpreter with NNKIT_CACHE_DIR=cache (and NUMBA_CACHE_DIR
    if given, else numba caches next to the modules); its JSON output."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NNKIT_BACKEND", "NUMBA_CACHE_DIR", "NNKIT_CACHE_DIR")}
    env["NNKIT_CACHE_DIR"] = str(cache)
    if numba_cache is not None:
        env["NUMBA_CACHE_DIR"] = str(numba_cache)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _train(cache):
    return _run(TRAIN.format(backend="numba", path="generated"), cache)


@pytest.fixture(scope="module")
def reference():
    """The numpy backend's losses for the network of TRAIN."""
    X, Y = nnkit.datasets.xor_gate()
    net = nnkit.Network([nnkit.Dense(2, 3, activation="tanh"),
                         nnkit.Dense(3, 1, activation="sigmoid")],
                        loss="mse", dtype="float64", seed=0, backend="numpy")
    return np.array(net.fit(X, Y, epochs=20, lr=0.5).loss)


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    """A cache folder holding TRAIN's compiled generated kernel: (folder, kernel file, text)."""
    cache = tmp_path_factory.mktemp("seed")
    out = _train(cache)
    assert out["ran"] == [["epochs", "generated"]]
    folder = cache / "numba-kernels"
    assert out["folder"] == [str(folder), None]
    [kernel] = folder.glob("nnkit_kernel_*.py")
    return cache, kernel.name, kernel.read_bytes()


@pytest.fixture
def cache(seed, tmp_path):
    """A private copy of the seed cache: (NNKIT_CACHE_DIR, kernel file, its right text)."""
    root, name, text = seed
    copy = tmp_path / "cache"
    shutil.copytree(root, copy, symlinks=True)
    return copy, copy / "numba-kernels" / name, text


def _plant(path, marker):
    """Module text that would leave ``marker`` behind if it were ever executed."""
    path.write_text(f"open({str(marker)!r}, 'w').close()\n"
                    "def train_epochs(*args):\n    return 0\n")


def _check(out, reference):
    np.testing.assert_allclose(out["loss"], reference, rtol=1e-9, atol=0)


# ------------------------------------------------------------------ the folder
def test_configured_folder_is_created_private(tmp_path, monkeypatch):
    monkeypatch.setenv("NNKIT_CACHE_DIR", str(tmp_path / "new"))
    folder, reason = cache_dir_and_reason()
    assert (folder, reason) == (str(tmp_path / "new" / "numba-kernels"), None)
    for made in (folder, os.path.join(folder, "__pycache__")):  # numba's cache goes there
        assert stat.S_IMODE(os.stat(made).st_mode) & 0o077 == 0


def _shared(folder):
    os.chmod(folder, 0o777)


def _symlinked(folder):
    real = folder.parent / "real"
    folder.rename(real)
    folder.symlink_to(real)


def _pycache_shared(folder):
    (folder / "__pycache__").mkdir()
    os.chmod(folder / "__pycache__", 0o777)


def _foreign(folder):
    os.chown(folder, OTHER_UID, OTHER_UID)


@pytest.mark.parametrize("spoil, why", [
    (_shared, "writable by group or others"),
    (_symlinked, "symlink"),
    (_pycache_shared, "__pycache__"),
    pytest.param(_foreign, "belongs to uid", marks=as_root),
])
def test_untrusted_folder_is_not_used(tmp_path, monkeypatch, spoil, why):
    configured = tmp_path / "numba-kernels"
    configured.mkdir(mode=0o700)
    spoil(configured)
    monkeypatch.setenv("NNKIT_CACHE_DIR", str(tmp_path))
    folder, reason = cache_dir_and_reason()
    assert folder != str(configured) and why in reason and str(configured) in reason
    # a private temp folder, with an unpredictable name, one per process
    assert os.path.dirname(folder) == tempfile.gettempdir()
    assert os.path.basename(folder).startswith("nnkit-kernels-")
    st = os.lstat(folder)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == os.getuid()
    assert cache_dir_and_reason()[0] == folder


def test_planted_kernel_in_a_shared_folder_is_not_run(cache, tmp_path, reference):
    root, kernel, _ = cache
    marker = tmp_path / "MARKER"
    _plant(kernel, marker)
    planted = kernel.read_bytes()
    os.chmod(kernel.parent, 0o777)
    out = _train(root)
    _check(out, reference)
    assert not marker.exists()
    assert out["folder"][0] != str(kernel.parent) and "mode 777" in out["folder"][1]
    assert kernel.read_bytes() == planted  # the shared folder is not written either


# ------------------------------------------------------------- the kernel file
@pytest.mark.parametrize("spoil", ["planted", "truncated", "garbage", "empty"])
def test_bad_kernel_file_is_rewritten(cache, tmp_path, reference, spoil):
    root, kernel, text = cache
    marker = tmp_path / "MARKER"
    if spoil == "planted":
        _plant(kernel, marker)
    elif spoil == "truncated":
        kernel.write_bytes(text[:len(text) // 2])
    elif spoil == "garbage":
        kernel.write_bytes(os.urandom(len(text)))
    else:
        kernel.write_bytes(b"")
    out = _train(root)
    _check(out, reference)
    assert not marker.exists()
    assert out["folder"] == [str(kernel.parent), None]
    assert kernel.read_bytes() == text
    assert not list(kernel.parent.glob("*.tmp"))


def _symlink_to_planted(kernel, marker):
    elsewhere = kernel.parent.parent / "elsewhere.py"
    _plant(elsewhere, marker)
    kernel.unlink()
    kernel.symlink_to(elsewhere)


def _foreign_planted(kernel, marker):
    _plant(kernel, marker)
    os.chown(kernel, OTHER_UID, OTHER_UID)


@pytest.mark.parametrize("spoil", [_symlink_to_planted, pytest.param(_foreign_planted,
                                                                     marks=as_root)])
def test_foreign_kernel_file_is_never_read(cache, tmp_path, reference, spoil):
    root, kernel, _ = cache
    marker = tmp_path / "MARKER"
    spoil(kernel, marker)
    before = os.lstat(kernel)
    _check(_train(root), reference)
    assert not marker.exists()
    after = os.lstat(kernel)  # left alone: the kernel was written to a private folder
    assert (after.st_mode, after.st_uid, after.st_ino) == (
        before.st_mode, before.st_uid, before.st_ino)


# ------------------------------------------------------------ numba's own cache
@pytest.mark.parametrize("spoil", ["index garbage", "index empty", "data truncated"])
def test_corrupt_numba_cache_entry_is_recompiled(cache, reference, spoil):
    root, kernel, _ = cache
    pycache = kernel.parent / "__pycache__"
    [index] = pycache.glob(kernel.stem + ".*.nbi")
    [data] = pycache.glob(kernel.stem + ".*.nbc")
    spoiled = {"index garbage": (index, os.urandom(200)), "index empty": (index, b""),
               "data truncated": (data, data.read_bytes()[:100])}[spoil]
    spoiled[0].write_bytes(spoiled[1])
    _check(_train(root), reference)
    assert spoiled[0].read_bytes() != spoiled[1]  # a fresh entry replaced the corrupt one
    assert index.exists() and data.exists()


def test_corrupt_numba_cache_of_hand_written_kernels_is_recompiled(tmp_path):
    numba_cache = tmp_path / "numba"
    first = _run(SGD, tmp_path / "nnkit", numba_cache)
    assert first == {"W": [[0.0, 0.0], [0.0, 0.0]], "b": [-0.5, -0.5]}
    [index] = numba_cache.glob("*/_numba_kernels.sgd_update-*.nbi")
    [data] = numba_cache.glob("*/_numba_kernels.sgd_update_1d-*.nbc")
    garbage, truncated = os.urandom(200), data.read_bytes()[:100]
    index.write_bytes(garbage)
    data.write_bytes(truncated)
    assert _run(SGD, tmp_path / "nnkit", numba_cache) == first
    assert index.read_bytes() != garbage and data.read_bytes() != truncated


def test_guard_is_idempotent():
    from nnkit.backends import _numba_kernels
    _numba_codegen.guard_numba_cache(_numba_kernels)
    load = _numba_kernels.sgd_update._cache.load_overload
    _numba_codegen.guard_numba_cache(_numba_kernels)
    assert _numba_kernels.sgd_update._cache.load_overload is load


class _Evil:
    """A pickle that, when loaded, leaves a marker file: a planted numba index."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_planted_index_in_a_shared_numba_cache_dir_is_not_unpickled(tmp_path, reference):
    """NUMBA_CACHE_DIR may be a shared folder: numba unpickles its index files, so a
    folder others can write is not used at all (kernels compile in every process)."""
    import pickle
    shared = tmp_path / "numba-shared"
    shared.mkdir()
    first = _run(TRAIN.format(backend="numba", path="generated"), tmp_path / "nnkit", shared)
    _check(first, reference)
    marker = tmp_path / "MARKER"
    indexes = list(shared.rglob("*.nbi"))
    assert indexes  # numba cached there while the folder was private
    for folder in {p.parent for p in indexes}:
        folder.chmod(0o777)  # now others could have written...
    for index in indexes:
        index.write_bytes(pickle.dumps(_Evil(marker)))  # ...and did
    again = _run(TRAIN.format(backend="numba", path="generated"), tmp_path / "nnkit", shared)
    _check(again, reference)
    assert not marker.exists()
