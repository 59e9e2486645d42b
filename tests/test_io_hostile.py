"""``load`` does not trust the file; ``save`` respects the umask (issue 17).

Every hostile file is built here: a zip with a crafted metadata member, members whose
.npy header or zip entry lies about their size, zip bombs, .npy files, random bytes.
"""
import io
import json
import os
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnkit
from nnkit import io as nio

MB = 1 << 20


# ------------------------------------------------------------------ helpers
def small_net(dtype="float32"):
    return nnkit.Network([nnkit.Dense(2, 3, "tanh"), nnkit.Dense(3, 1, "sigmoid")],
                         loss="binary_crossentropy", dtype=dtype, seed=4, backend="numpy")


@pytest.fixture(scope="module")
def valid_bytes(tmp_path_factory):
    """The bytes of a file written by ``nnkit.save``."""
    path = tmp_path_factory.mktemp("valid") / "net.npz"
    nnkit.save(small_net(), path)
    return path.read_bytes()


def npy(arr):
    """``arr`` as .npy bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=True)
    return buf.getvalue()


def meta_npy(meta):
    """Metadata (a dict, or any JSON value) as the bytes of a ``meta.npy`` member."""
    return npy(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))


def valid_meta():
    return {"format": "nnkit-network", "version": 1, "loss": "binary_crossentropy",
            "dtype": "float32", "seed": 4,
            "layers": [[2, 3, "tanh"], [3, 1, "sigmoid"]]}


def members_of(data):
    """``{name: bytes}`` of every member of the zip ``data``."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def write_zip(path, members, compression=zipfile.ZIP_STORED):
    """Write ``{name: bytes}`` as a zip at ``path``; return ``path``."""
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def with_meta(tmp_path, valid_bytes, meta, **extra_members):
    """A copy of the valid file with its metadata replaced (and members added)."""
    members = members_of(valid_bytes)
    members["meta.npy"] = meta_npy(meta)
    members.update(extra_members)
    return write_zip(tmp_path / "crafted.npz", members)


def patch_central(data, name, **fields):
    """Rewrite fields (compress_size, file_size, flags, method) of ``name``'s central
    directory entry in the zip bytes ``data``."""
    offsets = {"flags": (8, "<H"), "method": (10, "<H"), "compress_size": (20, "<I"),
               "file_size": (24, "<I")}
    data = bytearray(data)
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        n_name = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46: pos + 46 + n_name] == name.encode():
            for field, value in fields.items():
                off, fmt = offsets[field]
                struct.pack_into(fmt, data, pos + off, value)
            return bytes(data)
        pos = data.find(b"PK\x01\x02", pos + 4)
    raise AssertionError(f"no central directory entry for {name}")


def zero_bomb(zf, name, header, n_bytes):
    """Add a deflated member: .npy ``header`` then ``n_bytes`` zeros, written in 1 MB
    chunks so that the test itself never holds it in memory."""
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w", force_zip64=True) as fh:
        fh.write(header)
        chunk = bytes(MB)
        for _ in range(n_bytes // MB):
            fh.write(chunk)
        fh.write(bytes(n_bytes % MB))


def npy_header(shape, dtype="<f4"):
    """A .npy 1.0 header declaring ``shape`` and ``dtype`` (no data)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def load_peak(path):
    """``nnkit.load(path)``'s exception and the peak memory it traced (bytes)."""
    tracemalloc.start()
    try:
        nnkit.load(path)
        exc = None
    except ValueError as e:
        exc = e
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return exc, peak


def refused(path, match):
    """``load(path)`` raises ValueError naming the file and matching ``match``."""
    with pytest.raises(ValueError, match=match) as info:
        nnkit.load(path)
    msg = str(info.value)
    assert repr(os.fspath(path)) in msg
    assert "allow_pickle" not in msg
    return msg


# ---------------------------------------------------- metadata schema probes
@pytest.mark.parametrize("key, why", [
    ("format", "not an nnkit network"), ("version", "unknown format version null"),
    ("loss", r"missing keys \['loss'\]"), ("dtype", r"missing keys \['dtype'\]"),
    ("layers", r"missing keys \['layers'\]")])
def test_missing_metadata_key(tmp_path, valid_bytes, key, why):
    """Probe: missing metadata keys gave KeyError: 'layers'."""
    meta = valid_meta()
    del meta[key]
    refused(with_meta(tmp_path, valid_bytes, meta), why)


def test_unknown_metadata_key(tmp_path, valid_bytes):
    meta = dict(valid_meta(), extra=1)
    refused(with_meta(tmp_path, valid_bytes, meta), r'unknown keys \["extra"\]')


@pytest.mark.parametrize("version", [0, -5, True, False, None, "1", 1.0, [1]])
def test_unknown_version(tmp_path, valid_bytes, version):
    """Probe: versions 0, -5 and true loaded."""
    meta = dict(valid_meta(), version=version)
    refused(with_meta(tmp_path, valid_bytes, meta), "unknown format version")


def test_newer_version(tmp_path, valid_bytes):
    meta = dict(valid_meta(), version=999)
    refused(with_meta(tmp_path, valid_bytes, meta), "version 999.*upgrade nnkit")


@pytest.mark.parametrize("field, value", [
    ("dtype", None), ("dtype", "float16"), ("dtype", "int32"), ("dtype", 5),
    ("dtype", ["float32"]), ("loss", None), ("loss", "hinge"), ("loss", 3),
    ("seed", -1), ("seed", "x"), ("seed", True), ("seed", 1.5)])
def test_bad_metadata_field(tmp_path, valid_bytes, field, value):
    """Probe: dtype null loaded."""
    meta = dict(valid_meta(), **{field: value})
    refused(with_meta(tmp_path, valid_bytes, meta), f"{field}: expected")


@pytest.mark.parametrize("layers, why", [
    (5, "expected a list"), ([], "expected a list"), ("2,3", "expected a list"),
    ([[2, 3, "tanh"]] * (nio.MAX_LAYERS + 1), "expected a list"),
    ([[2, 3]], r"expected \[n_in, n_out, activation\]"),
    ([[2, 3, "tanh", 0]], r"expected \[n_in, n_out, activation\]"),
    ([[2, "3", "tanh"]], r"expected \[n_in"), ([[2.0, 3, "tanh"]], r"expected \[n_in"),
    ([[True, 3, "tanh"]], r"expected \[n_in"), ([[2, 3, None]], r"expected \[n_in"),
    ([5, 6], r"expected \[n_in"), ([[0, 3, "tanh"]], "sizes must lie"),
    ([[2, -1, "tanh"]], "sizes must lie"), ([[2, nio.MAX_UNITS + 1, "tanh"]], "sizes must"),
    ([[2, 3, "foo"]], "activation: expected one of"),
    ([[2, 3, "tanh"], [4, 1, "sigmoid"]], "layer 1 expects 4 inputs")])
def test_bad_layers(tmp_path, valid_bytes, layers, why):
    """Probe: layers=5 gave TypeError: 'int' object is not iterable."""
    meta = dict(valid_meta(), layers=layers)
    refused(with_meta(tmp_path, valid_bytes, meta), "layers: (layer 0: )?" + why)


def test_bce_needs_sigmoid_output(tmp_path, valid_bytes):
    meta = dict(valid_meta(), layers=[[2, 3, "tanh"], [3, 1, "linear"]])
    refused(with_meta(tmp_path, valid_bytes, meta), "needs a 'sigmoid' output")


@pytest.mark.parametrize("meta", [[1, 2], "nnkit-network", 5, None, {"format": "other"}])
def test_metadata_not_an_nnkit_dict(tmp_path, valid_bytes, meta):
    refused(with_meta(tmp_path, valid_bytes, meta), "not an nnkit network")


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000])
def test_corrupt_metadata(tmp_path, valid_bytes, raw):
    members = members_of(valid_bytes)
    members["meta.npy"] = npy(np.frombuffer(raw, dtype=np.uint8))
    refused(write_zip(tmp_path / "m.npz", members), "corrupt nnkit metadata")


@pytest.mark.parametrize("meta_arr, why", [
    (np.zeros(3, dtype=np.float64), "dtype float64, expected uint8"),
    (np.zeros((2, 2), dtype=np.uint8), "its metadata has shape"),
    (np.zeros(nio.MAX_META_BYTES + 1, dtype=np.uint8), "its metadata has shape"),
    (np.array([{"format": "nnkit-network"}], dtype=object), "dtype object")])
def test_metadata_member_of_wrong_type(tmp_path, valid_bytes, meta_arr, why):
    members = members_of(valid_bytes)
    members["meta.npy"] = npy(meta_arr)
    refused(write_zip(tmp_path / "m.npz", members, zipfile.ZIP_DEFLATED), why)


# -------------------------------------------------- shapes, sizes, allocation
def test_huge_declared_net_in_small_file_allocates_nothing(tmp_path, valid_bytes):
    """Probe: a 1.5 KB file declaring a 2-50,000,000-1 net allocated 1.2 GB."""
    meta = dict(valid_meta(), layers=[[2, 50_000_000, "tanh"], [50_000_000, 1, "sigmoid"]])
    path = with_meta(tmp_path, valid_bytes, meta)
    assert path.stat().st_size < 2000
    refused(path, "sizes must lie")
    # within the unit bound the members' real sizes refuse it, still before allocating
    meta["layers"] = [[2, 1_000_000, "tanh"], [1_000_000, 1, "sigmoid"]]
    path = with_meta(tmp_path, valid_bytes, meta)
    exc, peak = load_peak(path)
    assert "expected shape (2, 1000000)" in str(exc)
    assert peak < 2 * MB


def test_header_declaring_terabytes(tmp_path, valid_bytes):
    """Probe: declared shapes of terabytes raised MemoryError."""
    n = nio.MAX_UNITS
    meta = dict(valid_meta(), loss="mse", layers=[[n, n, "linear"]])
    members = {"meta.npy": meta_npy(meta), "W0.npy": npy_header((n, n)) + bytes(64),
               "b0.npy": npy(np.zeros(n, np.float32))}
    path = write_zip(tmp_path / "tb.npz", members)
    exc, peak = load_peak(path)
    assert isinstance(exc, ValueError) and "W0.npy" in str(exc) and "need" in str(exc)
    assert peak < 12 * MB   # the 4 MB b0 member is never read either
    # a header declaring a huge shape where the metadata declares (2, 3)
    members = members_of(valid_bytes)
    members["W0.npy"] = npy_header((n, n)) + bytes(24)
    refused(write_zip(tmp_path / "w.npz", members), r"expected shape \(2, 3\)")


def test_member_with_trailing_or_missing_bytes(tmp_path, valid_bytes):
    members = members_of(valid_bytes)
    for data in (members["W0.npy"] + bytes(8), members["W0.npy"][:-4]):
        refused(write_zip(tmp_path / "t.npz", dict(members, **{"W0.npy": data})),
                "W0.npy.*need")


def test_missing_parameter_member(tmp_path, valid_bytes):
    members = members_of(valid_bytes)
    del members["b1.npy"]
    refused(write_zip(tmp_path / "m.npz", members), "missing member 'b1.npy'")


@pytest.mark.parametrize("arr, why", [
    (np.zeros((2, 3), np.float64), "dtype float64, expected float32"),
    (np.zeros((2, 3), np.int32), "dtype int32, expected float32"),
    (np.zeros((3, 2), np.float32), r"expected shape \(2, 3\)"),
    (np.zeros(6, np.float32), r"expected shape \(2, 3\)"),
    (np.array([[None] * 3] * 2, dtype=object), "dtype object")])
def test_wrong_parameter_shape_or_dtype(tmp_path, valid_bytes, arr, why):
    members = members_of(valid_bytes)
    members["W0.npy"] = npy(arr)
    refused(write_zip(tmp_path / "p.npz", members), why)


def test_non_finite_parameters(tmp_path, valid_bytes):
    members = members_of(valid_bytes)
    members["b0.npy"] = npy(np.array([0, np.nan, 0], np.float32))
    refused(write_zip(tmp_path / "n.npz", members), "invalid network.*NaN")


# ------------------------------------------------------------------ zip bombs
def test_unused_bomb_member_is_never_read(tmp_path, valid_bytes):
    """Probe: an unused member that inflates to 1 GB was read anyway."""
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members_of(valid_bytes).items():
            zf.writestr(name, data)
        zero_bomb(zf, "junk.npy", npy_header((50 * MB,), "|u1"), 50 * MB)
    assert path.stat().st_size < MB
    nnkit.load(path)   # warm up imports
    exc, peak = load_peak(path)
    assert exc is None and peak < 2 * MB
    # a central directory claiming 4 GB for the unused member changes nothing
    lie = tmp_path / "lie.npz"
    lie.write_bytes(patch_central(write_zip(tmp_path / "j.npz", dict(
        members_of(valid_bytes), **{"junk.npy": b"x" * 100}), zipfile.ZIP_DEFLATED)
        .read_bytes(), "junk.npy", file_size=0xFFFFFFF0))
    nnkit.load(lie)


def test_used_bomb_member_is_refused_before_inflating(tmp_path, valid_bytes):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members_of(valid_bytes).items():
            if name != "W0.npy":
                zf.writestr(name, data)
        zero_bomb(zf, "W0.npy", npy_header((2, 3)), 50 * MB)
    exc, peak = load_peak(path)
    assert "W0.npy" in str(exc) and "inflates to" in str(exc)
    assert peak < 2 * MB


def test_central_directory_lies_about_sizes(tmp_path, valid_bytes):
    data = write_zip(tmp_path / "d.npz", members_of(valid_bytes), zipfile.ZIP_DEFLATED) \
        .read_bytes()
    path = tmp_path / "lie.npz"
    path.write_bytes(patch_central(data, "W0.npy", file_size=0xFFFFFFF0))
    exc, peak = load_peak(path)
    assert "W0.npy" in str(exc) and "inflates to" in str(exc) and peak < 2 * MB
    path.write_bytes(patch_central(data, "W0.npy", compress_size=0xFFFFFFF0))
    refused(path, "past the end")
    stored = write_zip(tmp_path / "s.npz", members_of(valid_bytes)).read_bytes()
    path.write_bytes(patch_central(stored, "W0.npy", file_size=10_000))
    refused(path, "inconsistent sizes")


def test_compressed_net_over_budget(tmp_path):
    """A deflated file of zeros declaring a 2-1,000,000-1 net: 24 MB of members from a
    file of ~30 KB exceed the inflate budget and are refused before inflating."""
    n = 1_000_000
    meta = {"format": "nnkit-network", "version": 1, "loss": "mse", "dtype": "float64",
            "layers": [[2, n, "linear"], [n, 1, "linear"]]}
    path = tmp_path / "zeros.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.npy", meta_npy(meta))
        for name, shape in [("W0.npy", (2, n)), ("b0.npy", (n,)), ("W1.npy", (n, 1)),
                            ("b1.npy", (1,))]:
            zero_bomb(zf, name, npy_header(shape, "<f8"), 8 * int(np.prod(shape)))
    exc, peak = load_peak(path)
    assert "zip bomb" in str(exc) and peak < 2 * MB


def test_encrypted_or_exotic_members(tmp_path, valid_bytes):
    data = write_zip(tmp_path / "d.npz", members_of(valid_bytes)).read_bytes()
    path = tmp_path / "x.npz"
    path.write_bytes(patch_central(data, "W0.npy", flags=1))
    refused(path, "encrypted")
    path.write_bytes(patch_central(data, "W0.npy", method=12))
    refused(path, "compression method 12")


# ---------------------------------------------------------- not an nnkit file
def test_npy_file(tmp_path):
    """Probe: a .npy file gave a context-manager TypeError."""
    path = tmp_path / "arr.npy"
    np.save(path, np.zeros(3))
    refused(path, r"\.npy array file")
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    refused(pickled, r"\.npy array file")


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_never_suggest_pickle(tmp_path, seed):
    """Probe: reading a random file suggested allow_pickle."""
    path = tmp_path / "random.npz"
    path.write_bytes(np.random.default_rng(seed).bytes(1000 * (seed + 1)))
    refused(path, "not a readable nnkit file")


def test_empty_file_and_plain_npz(tmp_path):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    refused(empty, "not a readable nnkit file")
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(3))
    refused(plain, "no metadata")


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.6, 0.9, 0.99])
def test_truncated(tmp_path, valid_bytes, fraction):
    path = tmp_path / "cut.npz"
    path.write_bytes(valid_bytes[: int(len(valid_bytes) * fraction)])
    refused(path, "not a readable nnkit file")


def test_missing_file_and_bad_backend_are_not_file_errors(tmp_path, valid_bytes):
    with pytest.raises(FileNotFoundError):
        nnkit.load(tmp_path / "absent.npz")
    path = tmp_path / "ok.npz"
    path.write_bytes(valid_bytes)
    with pytest.raises(ValueError, match="backend") as info:
        nnkit.load(path, backend="bogus")
    assert str(path) not in str(info.value)


# ----------------------------------------------------------- what still loads
def test_older_and_other_writers_still_load(tmp_path, valid_bytes):
    """No seed key (seed 0), deflated members, Fortran order, big-endian arrays."""
    ref = nnkit.load(_write(tmp_path / "ref.npz", valid_bytes))
    members = members_of(valid_bytes)
    meta = valid_meta()
    del meta["seed"]
    members["meta.npy"] = meta_npy(meta)
    W0, b0 = ref.get_params()[0]
    members["W0.npy"] = npy(np.asfortranarray(W0))
    members["b0.npy"] = npy(b0.astype(">f4"))
    back = nnkit.load(write_zip(tmp_path / "old.npz", members, zipfile.ZIP_DEFLATED))
    assert back.seed == 0
    for (W, b), (W_ref, b_ref) in zip(back.get_params(), ref.get_params()):
        assert W.tobytes() == W_ref.tobytes() and b.tobytes() == b_ref.tobytes()


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_bit_identical(tmp_path, dtype):
    net = small_net(dtype)
    X, Y = nnkit.datasets.xor_gate()
    net.fit(X, Y, epochs=20, lr=0.5)
    nnkit.save(net, tmp_path / "a.npz")
    back = nnkit.load(tmp_path / "a.npz")
    nnkit.save(back, tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    for (W, b), (W0, b0) in zip(back.get_params(), net.get_params()):
        assert W.dtype == W0.dtype and W.tobytes() == W0.tobytes() and b.tobytes() == b0.tobytes()


# ------------------------------------------------------------------ the umask
@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600),
                                         (0o002, 0o664)])
def test_save_gets_the_umask_mode(tmp_path, umask, mode):
    """Probe: saved files were mode 0600 whatever the umask."""
    old = os.umask(umask)
    try:
        path = tmp_path / "net.npz"
        nnkit.save(small_net(), path)
        assert path.stat().st_mode & 0o777 == mode
        nnkit.save(small_net(), path)   # replacing a file: same
        assert path.stat().st_mode & 0o777 == mode
    finally:
        os.umask(old)
    assert os.listdir(tmp_path) == ["net.npz"]


# ---------------------------------------------------- random bytes, mutations
def _load_bytes(folder, data):
    """``load`` the bytes ``data``; only ValueError may come out of it."""
    path = folder / "fuzz.npz"
    path.write_bytes(data)
    try:
        nnkit.load(path)
    except ValueError as exc:
        assert "allow_pickle" not in str(exc) and str(path) in str(exc)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


_FUZZ = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(data=st.binary(max_size=2000))
def test_property_random_bytes(fuzz_dir, data):
    _load_bytes(fuzz_dir, data)


@_FUZZ
@given(data=st.binary(max_size=400))
def test_property_random_bytes_behind_zip_magic(fuzz_dir, data):
    _load_bytes(fuzz_dir, b"PK\x03\x04" + data + b"PK\x05\x06" + data[:18])


_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 8)))


def _mutate(data, mutations):
    data = bytearray(data)
    for kind, where, arg in mutations:
        i = where % (len(data) + 1)
        if kind == "flip" and i < len(data):
            data[i] ^= arg
        elif kind == "truncate":
            del data[i:]
        elif kind == "insert":
            data[i:i] = arg
        elif kind == "delete":
            del data[i:i + arg]
    return bytes(data)


@_FUZZ
@given(mutations=st.lists(_mutation, min_size=1, max_size=4))
def test_property_mutations_of_a_valid_file(fuzz_dir, valid_bytes, mutations):
    _load_bytes(fuzz_dir, _mutate(valid_bytes, mutations))


@_FUZZ
@given(mutations=st.lists(_mutation, min_size=1, max_size=3), deflate=st.booleans())
def test_property_mutations_near_the_metadata(fuzz_dir, valid_bytes, mutations, deflate):
    """Mutations inside the zip's structures and the JSON (placed at the metadata)."""
    members = members_of(valid_bytes)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) \
            as zf:
        zf.writestr("meta.npy", members.pop("meta.npy"))
        for name, data in members.items():
            zf.writestr(name, data)
    data = buf.getvalue()
    mutations = [(k, w % 400, a) for k, w, a in mutations]   # the first member: meta.npy
    _load_bytes(fuzz_dir, _mutate(data, mutations))


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)


@_FUZZ
@given(key=st.sampled_from(["format", "version", "loss", "dtype", "seed", "layers", "x"]),
       value=_json, raw_edit=_mutation)
def test_property_crafted_metadata(fuzz_dir, valid_bytes, key, value, raw_edit):
    """Well-formed zips whose metadata holds a random JSON value at a key, or whose
    JSON text is mutated (so the zip's CRCs still hold)."""
    members = members_of(valid_bytes)
    meta = dict(valid_meta(), **{key: value})
    members["meta.npy"] = meta_npy(meta)
    _load_bytes(fuzz_dir, write_zip(fuzz_dir / "m.npz", members).read_bytes())
    text = _mutate(json.dumps(valid_meta()).encode(), [raw_edit])
    members["meta.npy"] = npy(np.frombuffer(text, dtype=np.uint8))
    _load_bytes(fuzz_dir, write_zip(fuzz_dir / "m.npz", members).read_bytes())
