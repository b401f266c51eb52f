"""A memory-mapped array is measured a block at a time: the same results as in memory, bit for bit (the
graph, the fused exact K_F pass, MLE, TwoNN, LabelSharpness), for float32, float64 and uint8 files, with
duplicates and label conflicts; bad values get the in-memory message; and the memory a search needs does
not grow with the file (a fresh process, its peak resident memory)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from intrinsics.errors import DuplicateWarning, EstimationError, SettingError
from intrinsics.measure import MLE, LabelSharpness, TwoNN, kneighbors
from intrinsics.measure._source import RowSource
from intrinsics.measure.neighbors import kneighbors_and_nearest_other, nearest_other_label
from tests.conftest import assert_closest_rows


def _saved(tmp_path, X, name="x.npy"):
    path = tmp_path / name
    np.save(path, X)
    return np.load(path, mmap_mode="r")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_memory_mapped_input_gives_the_in_memory_results(tmp_path, dtype):
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((6, 64))
    X = (np.tanh(rng.standard_normal((1500, 6)) @ basis) * 100 + 128).clip(0, 255).astype(dtype)
    y = rng.integers(0, 3, len(X))
    X[40:44] = X[7]          # exact copies, one with another label (a label conflict)
    y[41] = (y[7] + 1) % 3
    M = _saved(tmp_path, X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = kneighbors(X, 10), kneighbors(M, 10, block_size=256)
        (ga, oa), (gb, ob) = kneighbors_and_nearest_other(X, 8, y), kneighbors_and_nearest_other(M, 8, y, block_size=300)
        _, oc = kneighbors_and_nearest_other(M, 8, y, block_size=300, closest=5)  # only the 5 closest rows
        sa, sb = LabelSharpness(400, n_draws=4).fit(X, y).estimate_, LabelSharpness(400, n_draws=4).fit(M, y).estimate_
    assert b.engine["out_of_core"] is True and "out_of_core" not in a.engine
    for u, v in ((a.distances, b.distances), (a.indices, b.indices), (a.kept, b.kept), (ga.indices, gb.indices),
                 (ga.distances, gb.distances), *zip(oa, ob)):
        np.testing.assert_array_equal(u, v)
    assert a.duplicates == b.duplicates and a.duplicates.n_removed == 4
    assert_closest_rows(oa, oc, 5, X)
    assert (sa.value, sa.ci95, sa.exact, sa.closest_pairs, sa.label_conflicts) == \
           (sb.value, sb.ci95, sb.exact, sb.closest_pairs, sb.label_conflicts)
    keep = np.ones(len(X), bool)
    keep[[41]] = False
    Xu, yu = X[keep], y[keep]
    Mu = _saved(tmp_path, Xu, "u.npy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicateWarning)
        assert MLE().fit(Mu).dimension_ == MLE().fit(Xu).dimension_
        assert TwoNN().fit(Mu).dimension_ == TwoNN().fit(Xu).dimension_
    first = np.unique(Xu, axis=0, return_index=True)[1]
    np.testing.assert_array_equal(nearest_other_label(Mu[np.sort(first)], yu[np.sort(first)])[0],
                                  nearest_other_label(Xu[np.sort(first)], yu[np.sort(first)])[0])


def test_a_memory_mapped_image_stack_is_flattened(tmp_path):
    X = np.random.default_rng(1).random((300, 1, 8, 8)).astype(np.float32)
    M = _saved(tmp_path, X)
    assert RowSource(M).shape == (300, 64)
    np.testing.assert_array_equal(kneighbors(M, 5).indices, kneighbors(X, 5).indices)


def test_bad_memory_mapped_input_is_refused_with_the_in_memory_message(tmp_path):
    X = np.random.default_rng(2).random((200, 10))
    X[17, 3] = np.nan
    with pytest.raises(EstimationError, match=r"NaN or infinite values in 1 of 200 samples \(e.g. rows \[17\]\)"):
        kneighbors(_saved(tmp_path, X), 5)
    with pytest.raises(SettingError, match="cannot search a memory-mapped array"):
        kneighbors(_saved(tmp_path, np.tile(np.arange(50.0)[:, None], (1, 10)), "ok.npy"), 5, device="cuda")


PEAK = """
import sys, json, warnings
import numpy as np
from intrinsics.measure import neighbors
from intrinsics.measure.neighbors import kneighbors_and_nearest_other

neighbors._PREPARED_BYTES = 8 << 20  # the kept prepared blocks' budget, below the file's size here

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

small = np.load(sys.argv[2], mmap_mode="r")
kneighbors_and_nearest_other(small, 20, np.arange(len(small)) % 2, block_size=1024)  # compiled, pools started
base = hwm()
X = np.load(sys.argv[1], mmap_mode="r")
kneighbors_and_nearest_other(X, 20, np.arange(len(X)) % 2, block_size=1024)
print(json.dumps({"base": base, "peak": hwm()}))

"""


def test_the_memory_of_a_search_does_not_grow_with_the_file(tmp_path):
    rng = np.random.default_rng(3)
    n, D = 24_000, 1024  # a 98 MB file
    path = tmp_path / "big.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, D))
    for s in range(0, n, 2000):
        X[s:s + 2000] = rng.standard_normal((2000, D), dtype=np.float32)
    X.flush()
    del X
    np.save(tmp_path / "small.npy", rng.standard_normal((3000, D), dtype=np.float32))
    out = subprocess.run([sys.executable, "-c", PEAK, str(path), str(tmp_path / "small.npy")],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    grown = r["peak"] - r["base"]
    file_bytes = n * D * 4
    # lists (24,000 × 22 × 12 bytes), 8 MiB of kept blocks, one block of products, a refinement chunk
    assert grown < 0.25 * file_bytes, f"peak grew by {grown / 2**20:.0f} MiB for a {file_bytes / 2**20:.0f} MiB file"
