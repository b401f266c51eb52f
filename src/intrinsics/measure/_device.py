"""The neighbour engine on a CUDA device: the same candidates-then-exact-refinement as on the CPU.

On a GPU the float32 matrix multiply is cheap enough that neither the symmetric half nor the
principal-component pruning of the CPU engine pays: each block of rows is multiplied against every
column chunk (G = −d²/2 in IEEE float32, TF32 off: a TF32 product rounds to 10 bits and would break the
candidate margin), the best candidates of each row kept by ``torch.topk`` merged chunk by chunk, then
every candidate's distance recomputed exactly from float64 differences of the input values, on the
device, and the k-th distance checked against the worst-case float32 rounding as on the CPU (a row it
cannot certify is compared with every row). Results equal the CPU engine's up to float64 summation
order: distances to about 1e-13 relative, the same neighbours except where two distances tie to that
precision.

Everything here runs on any torch device; the tests run it on the CPU (``resolve`` patched), which is
the device code path short of the CUDA kernels themselves.
"""

from __future__ import annotations

import math
import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from ..errors import EstimationError, SettingError, spell

__all__ = ["DEVICES", "TorchEngine", "resolve"]

DEVICES = "auto, cpu, cuda or cuda:N"
_ROWS = 4096  # query rows per block
_COLS = 32768  # columns per product: a block's scores are _ROWS × _COLS float32 (512 MiB)
_REFINE_BYTES = 256 << 20  # float64 differences held at once by the exact refinement


def _gpu_possible() -> bool:
    """Whether a CUDA device could be visible, found without importing torch (a cold import takes
    seconds, and a CPU-only machine should not pay them to learn it has no GPU)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return "torch" in sys.modules or os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia")


def resolve(device: Any = "auto") -> Any:
    """The torch device the engine runs on, or None for the CPU engine.

    ``"auto"``: the current CUDA device when one is visible, else the CPU; ``"cpu"``; ``"cuda"`` or
    ``"cuda:N"`` (an error when no such GPU is visible). A torch.device is accepted as well.
    """
    name = "auto" if device is None else str(device).strip().lower()
    if name == "cpu":
        return None
    if name == "auto":
        if not _gpu_possible():
            return None
        import torch

        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise SettingError("device", device, f"is not a device; pass {DEVICES}") from None
    if dev.type != "cuda":
        raise SettingError("device", device, f"is not a device intrinsics runs on (only the CPU and CUDA); pass {DEVICES}")
    if not torch.cuda.is_available():
        raise SettingError("device", device, "asks for a GPU but none is visible",
                           f"use {spell('device', 'cpu')} or {spell('device', 'auto')}")
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise SettingError("device", device, f"names a GPU that is not there ({count} visible: cuda:0..cuda:{count - 1})")
    return torch.device("cuda", torch.cuda.current_device() if dev.index is None else dev.index)


@contextmanager
def _ieee_float32() -> Iterator[None]:
    """float32 products in IEEE float32 (no TF32, no bfloat16 passes) for the duration, then restored."""
    import torch

    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


def _memory(dev: Any) -> tuple[int, int] | None:
    """Free and total bytes of a CUDA device (None for the CPU, whose memory the data loader checks)."""
    if dev.type != "cuda":
        return None
    import torch

    return tuple(torch.cuda.mem_get_info(dev))  # type: ignore[return-value]


class TorchEngine:
    """The neighbour engine on torch device ``dev`` for the rows of ``A`` (C-contiguous float32/float64).

    :meth:`candidates` fills the engine's running lists (``neighbors._Lists``) with each row's best
    float32 candidates, :meth:`refine` recomputes candidate distances exactly; the input stays on the
    device between the two.
    """

    def __init__(self, A: np.ndarray, dev: Any):
        import torch

        self.torch, self.dev = torch, dev
        n, D = A.shape
        self._check_memory(n, D, A.dtype.itemsize)
        self.X = torch.from_numpy(A).to(dev)  # the input values, for the exact refinement
        mean = self.X.mean(dim=0, dtype=torch.float64)
        # Centred float32 rows and half their squared norms (from float64), as the CPU engine's
        # augmented matrix holds them: centring changes no distance but shrinks |x|², which float32
        # rounding scales with.
        self.Xc = torch.empty((n, D), dtype=torch.float32, device=dev)
        self.h = torch.empty(n, dtype=torch.float32, device=dev)
        step = max(1, (64 << 20) // (8 * D))
        for s in range(0, n, step):
            c = self.X[s:s + step].to(torch.float64) - mean
            self.Xc[s:s + step] = c
            self.h[s:s + step] = 0.5 * (c * c).sum(dim=1)

    def _check_memory(self, n: int, D: int, itemsize: int) -> None:
        """The input, its float32 copy and one block of scores must fit on the device: checked before
        any work, with the figures and the fix in the message."""
        have = _memory(self.dev)
        if have is None:
            return
        free, total = have
        need = n * D * (itemsize + 4) + 3 * 4 * _ROWS * min(n, _COLS) + _REFINE_BYTES
        if need > free:
            raise EstimationError(
                f"the neighbour engine needs {need / 2**30:.1f} GiB on {self.dev} for {n:,} × {D:,} values, "
                f"{free / 2**30:.1f} GiB of {total / 2**30:.1f} GiB are free; use {spell('device', 'cpu')} "
                "or measure fewer images")

    def record(self) -> dict[str, Any]:
        """How the engine ran, for a result's provenance."""
        torch = self.torch
        out: dict[str, Any] = {"gemm": "torch", "device": str(self.dev)}
        if self.dev.type == "cuda":
            out["device_name"] = torch.cuda.get_device_name(self.dev)
        else:
            out["threads"] = int(torch.get_num_threads())
        return out

    def candidates(self, lists: list[Any], *, progress: bool = False, desc: str = "kNN") -> dict[str, Any]:
        """Fill each list's ``best_i`` with the indices of the row's ``k_cand`` smallest float32 distances
        (self excluded; with labels, only rows of another label whose label is not negative)."""
        torch = self.torch
        n = self.Xc.shape[0]
        labels = [None if lst.labels is None else torch.from_numpy(np.ascontiguousarray(lst.labels)).to(self.dev)
                  for lst in lists]
        for lst in lists:
            lst.start(n)
        blocks = range(0, n, _ROWS)
        if progress:
            from tqdm.auto import tqdm

            blocks = tqdm(blocks, desc=desc, unit="block", leave=False)
        with _ieee_float32(), torch.no_grad():
            for s in blocks:
                e = min(n, s + _ROWS)
                best = [None] * len(lists)
                for cs in range(0, n, _COLS):
                    ce = min(n, cs + _COLS)
                    G = self.Xc[s:e] @ self.Xc[cs:ce].T  # −d²/2 = a·b − |a|²/2 − |b|²/2
                    G -= self.h[s:e, None]
                    G -= self.h[None, cs:ce]
                    lo, hi = max(s, cs), min(e, ce)
                    if lo < hi:  # rows of this block among these columns: no row is its own candidate
                        r = torch.arange(lo, hi, device=self.dev)
                        G[r - s, r - cs] = -math.inf
                    for t, (lst, lab) in enumerate(zip(lists, labels)):
                        S = G
                        if lab is not None:  # one label, or a candidate left out (label < 0): no candidate
                            S = G.masked_fill((lab[s:e, None] == lab[None, cs:ce]) | (lab[None, cs:ce] < 0), -math.inf)
                        v, i = S.topk(min(lst.k_cand, ce - cs), dim=1)
                        i = i + cs
                        if best[t] is not None:
                            v, j = torch.cat([best[t][0], v], 1), torch.cat([best[t][1], i], 1)
                            v, p = v.topk(min(lst.k_cand, v.shape[1]), dim=1)
                            i = j.gather(1, p)
                        best[t] = (v, i)
                for lst, (v, i) in zip(lists, best):
                    lst.best_v[s:e, :v.shape[1]] = v.cpu().numpy()
                    lst.best_i[s:e, :i.shape[1]] = i.cpu().numpy()
        for lst in lists:  # topk's values are descending: each row's worst kept score is its last
            lst.worst_pos[:] = lst.k_cand - 1
        return {"pruned": False}

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    def rows_for_check(self) -> tuple[np.ndarray, int]:
        """|x − mean|² of every row (the scores' rounding scales with it) and D, for the check of the k-th
        distance against the worst-case float32 rounding (``neighbors._uncertified``)."""
        return (2.0 * self.h.to(self.torch.float64)).cpu().numpy(), int(self.X.shape[1])

    def exact_to_all(self, rows: np.ndarray) -> np.ndarray:
        """Squared distances (float64 differences) of ``rows`` to every row, on the device."""
        torch = self.torch
        n, D = self.X.shape
        out = torch.empty((rows.size, n), dtype=torch.float64, device=self.dev)
        step = max(1, _REFINE_BYTES // (8 * D))
        with torch.no_grad():
            for t, r in enumerate(rows.tolist()):
                x = self.X[r].to(torch.float64)
                for s in range(0, n, step):
                    out[t, s:s + step] = ((self.X[s:s + step].to(torch.float64) - x) ** 2).sum(dim=1)
        return out.cpu().numpy()

    def refine(self, rows: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact distances (float64 differences of the input values) of ``rows[i]`` to ``cand[i]``; the
        ``k`` nearest of each row, ascending (ties by index)."""
        torch = self.torch
        m, c = cand.shape
        D = self.X.shape[1]
        r_idx = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64)).to(self.dev)
        c_idx = torch.from_numpy(np.ascontiguousarray(cand, dtype=np.int64)).to(self.dev)
        d2 = torch.empty((m, c), dtype=torch.float64, device=self.dev)
        step = max(1, _REFINE_BYTES // (8 * max(1, c) * D))
        with torch.no_grad():
            for s in range(0, m, step):
                a = self.X[r_idx[s:s + step]].to(torch.float64)[:, None, :]
                b = self.X[c_idx[s:s + step]].to(torch.float64)
                d2[s:s + step] = ((a - b) ** 2).sum(dim=2)
            c_idx, by_index = torch.sort(c_idx, dim=1)  # ties by index, as on the CPU
            d2k, order = torch.sort(d2.gather(1, by_index), dim=1, stable=True)
            d2k, order = d2k[:, :k], order[:, :k]
            ind = c_idx.gather(1, order)
        return np.sqrt(d2k.cpu().numpy()), ind.cpu().numpy()
