import os
import zipfile

import numpy as np
import pytest

import nnkit

from conftest import BACKENDS


def trained(backend):
    X, Y = nnkit.datasets.xor_gate()
    net = nnkit.Network([nnkit.Dense(2, 3, "tanh"), nnkit.Dense(3, 1, "sigmoid")],
                        loss="binary_crossentropy", dtype="float32", seed=4, backend=backend)
    net.fit(X, Y, epochs=50, lr=0.5)
    return net, X


@pytest.mark.parametrize("target", BACKENDS)
def test_round_trip_across_backends(backend, target, tmp_path):
    net, X = trained(backend)
    path = tmp_path / "net.npz"
    nnkit.save(net, path)
    back = nnkit.load(path, backend=target)
    assert back.backend.name == target
    assert back.loss == net.loss and back.dtype == net.dtype
    assert [(l.n_in, l.n_out, l.activation) for l in back.layers] == \
        [(l.n_in, l.n_out, l.activation) for l in net.layers]
    for (W, b), (W0, b0) in zip(back.get_params(), net.get_params()):
        assert np.array_equal(W, W0) and np.array_equal(b, b0)
    np.testing.assert_allclose(back.predict(X), net.predict(X), rtol=1e-6)


def test_save_is_atomic_when_the_write_fails(tmp_path, monkeypatch):
    net, _ = trained("numpy")
    path = tmp_path / "net.npz"
    nnkit.save(net, path)
    original = path.read_bytes()
    other, _ = trained("numpy")
    other.fit(*nnkit.datasets.or_gate(), epochs=5, lr=1.0)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        nnkit.save(other, path)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["net.npz"]  # no temp file left behind


def test_truncated_file(tmp_path):
    net, _ = trained("numpy")
    path = tmp_path / "net.npz"
    nnkit.save(net, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable nnkit file"):
        nnkit.load(path)


def test_foreign_files(tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(3))
    with pytest.raises(ValueError, match="not an nnkit network"):
        nnkit.load(plain)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a readable nnkit file"):
        nnkit.load(text)
    pickled = tmp_path / "obj.npz"
    np.savez(pickled, meta=np.array([{"format": "nnkit-network"}], dtype=object))
    with pytest.raises(ValueError):
        nnkit.load(pickled)  # allow_pickle=False refuses object arrays


def test_newer_version_and_bad_shapes(tmp_path):
    import json
    net, _ = trained("numpy")
    path = tmp_path / "net.npz"
    nnkit.save(net, path)
    with np.load(path) as d:
        files = {k: d[k] for k in d.files}
    meta = json.loads(files["meta"].tobytes())
    meta["version"] = 99
    files["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "new.npz", **files)
    with pytest.raises(ValueError, match="version 99"):
        nnkit.load(tmp_path / "new.npz")
    meta["version"] = nnkit.io.VERSION
    files["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    files["W0"] = np.zeros((5, 5), dtype=np.float32)
    np.savez(tmp_path / "shape.npz", **files)
    with pytest.raises(ValueError, match=r"expected shape \(2, 3\)"):
        nnkit.load(tmp_path / "shape.npz")
    files["W0"] = np.zeros((2, 3), dtype=np.float64)
    np.savez(tmp_path / "dtype.npz", **files)
    with pytest.raises(ValueError, match="dtype float64, expected float32"):
        nnkit.load(tmp_path / "dtype.npz")
    assert zipfile.is_zipfile(path)


def test_version_1_files_still_load(tmp_path):
    """A file as nnkit wrote it before optimizer state existed (version 1, no optimizer
    key or members) loads, with no optimizer state; version 1 with one is refused."""
    import json
    net, _ = trained("numpy")
    path = tmp_path / "net.npz"
    nnkit.save(net, path)
    with np.load(path) as d:
        files = {k: d[k] for k in d.files if not k.startswith("s")}
    meta = json.loads(files["meta"].tobytes())
    assert "optimizer" in meta
    bad = dict(meta, version=1)
    files["meta"] = np.frombuffer(json.dumps(bad).encode(), dtype=np.uint8)
    np.savez(tmp_path / "bad.npz", **files)
    with pytest.raises(ValueError, match="optimizer state needs format version 2"):
        nnkit.load(tmp_path / "bad.npz")
    old = {k: v for k, v in meta.items() if k != "optimizer"}
    old["version"] = 1
    files["meta"] = np.frombuffer(json.dumps(old).encode(), dtype=np.uint8)
    np.savez(tmp_path / "old.npz", **files)
    back = nnkit.load(tmp_path / "old.npz")
    assert back.optimizer is None
    for (W, b), (W0, b0) in zip(back.get_params(), net.get_params()):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)
