"""Nearest training embeddings with FAISS: exact flat search, or an IVF index for large sets.

Embeddings are L2-normalised, so inner product is cosine similarity. ``index``:

- ``flat`` — ``IndexFlatIP``, exact (FAISS's blocked BLAS search);
- ``ivf`` — ``IndexIVFFlat`` with ``nlist ≈ 4 √R`` lists trained on up to 256 items per list,
  ``nprobe`` lists searched: approximate; its recall@1 against exact search is measured on up to
  ``recall_queries`` queries and reported beside the result;
- ``auto`` — ``flat`` below ``ivf_from`` reference items, ``ivf`` from there;
- ``torch`` — :func:`uterosynth.privacy.similarity.cosine_search` (exact, no FAISS).

Items of the query's own subject are never its neighbours: FAISS has no per-query filter, so
the search asks for ``k`` plus the largest number of references one subject holds and drops
same-subject hits, which keeps flat search exact. On a machine with a GPU and a ``faiss-gpu``
build, the index moves to the GPU.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from .similarity import Neighbours, cosine_search

__all__ = ["IndexChoice", "SearchReport", "embedding_search", "faiss_available"]

log = logging.getLogger(__name__)

IndexChoice = Literal["auto", "flat", "ivf", "torch"]


@dataclass(frozen=True)
class SearchReport:
    """What searched: the index kind, and for IVF its lists, probes and measured recall@1."""

    index: str
    nlist: int | None = None
    nprobe: int | None = None
    recall_at_1: float | None = None
    recall_queries: int | None = None

    def describe(self) -> str:
        """One line for the audit's notes."""
        if self.recall_at_1 is None:
            return self.index
        return (f"{self.index}: {self.nlist} lists, {self.nprobe} probed; recall@1 against exact search "
                f"{self.recall_at_1:.4f} on {self.recall_queries} queries")


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def embedding_search(
    query: torch.Tensor,
    reference: torch.Tensor,
    *,
    k: int = 1,
    query_groups: Sequence[int] | torch.Tensor | None = None,
    reference_groups: Sequence[int] | torch.Tensor | None = None,
    index: IndexChoice = "auto",
    ivf_from: int = 100_000,
    nprobe: int = 16,
    recall_queries: int = 1000,
    seed: int = 0,
    block_elements: int = 1 << 25,
) -> tuple[Neighbours, SearchReport]:
    """Top-``k`` references by cosine similarity of features ``(Q, F)`` / ``(R, F)``, skipping same-group pairs."""
    kind = _kind(index, reference.shape[0], ivf_from)
    if kind == "torch":
        found = cosine_search(query, reference, k=k, query_groups=query_groups, reference_groups=reference_groups,
                              block_elements=block_elements)
        return found, SearchReport("torch (exact)")
    import faiss

    q = F.normalize(query.float(), dim=1).contiguous().numpy()
    r = F.normalize(reference.float(), dim=1).contiguous().numpy()
    qg = None if query_groups is None else np.asarray(query_groups, dtype=np.int64)
    rg = None if reference_groups is None else np.asarray(reference_groups, dtype=np.int64)
    flat = faiss.IndexFlatIP(r.shape[1])
    if kind == "flat":
        flat.add(r)
        return _filtered(_on_device(flat), q, k, qg, rg), SearchReport("faiss flat (exact)")
    nlist = max(1, min(int(round(4 * math.sqrt(r.shape[0]))), r.shape[0] // 39))
    ivf = faiss.IndexIVFFlat(flat, r.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = r[rng.choice(r.shape[0], min(r.shape[0], 256 * nlist), replace=False)]
    ivf.train(sample)
    ivf.add(r)
    ivf.nprobe = min(nprobe, nlist)
    found = _filtered(_on_device(ivf), q, k, qg, rg)
    recall, n = _recall(found, q, r, qg, rg, recall_queries, rng)
    return found, SearchReport("faiss IVF (approximate)", nlist=nlist, nprobe=ivf.nprobe, recall_at_1=recall,
                               recall_queries=n)


def _kind(index: IndexChoice, n_ref: int, ivf_from: int) -> str:
    if index == "torch":
        return "torch"
    if not faiss_available():
        if index != "auto":
            log.warning("faiss is not installed: exact torch search instead of '%s'", index)
        return "torch"
    if index == "auto":
        return "ivf" if n_ref >= ivf_from else "flat"
    return index


def _on_device(index):
    """The index on the GPU when this FAISS build and the machine have one."""
    import faiss

    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    return index


def _filtered(index, q: np.ndarray, k: int, qg: np.ndarray | None, rg: np.ndarray | None) -> Neighbours:
    """Search ``k`` + the largest group's size, then drop same-group hits (exact for a flat index)."""
    n_ref = index.ntotal
    k = min(k, n_ref)
    extra = 0 if qg is None or rg is None else int(np.unique(rg, return_counts=True)[1].max())
    values, idx = index.search(q, min(n_ref, k + extra))
    values = values.astype(np.float32)
    idx = idx.astype(np.int64)
    invalid = idx < 0
    if extra:
        invalid |= rg[np.clip(idx, 0, None)] == qg[:, None]
    values = np.where(invalid, -np.inf, values)
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    best_v = np.take_along_axis(values, order, axis=1)
    best_i = np.where(np.isinf(best_v), -1, np.take_along_axis(idx, order, axis=1))
    return Neighbours(torch.from_numpy(best_v), torch.from_numpy(best_i), torch.zeros(best_i.shape, dtype=torch.long))


def _recall(found: Neighbours, q: np.ndarray, r: np.ndarray, qg, rg, n: int, rng: np.random.Generator) -> tuple[float, int]:
    """Recall@1 of ``found`` against exact flat search on up to ``n`` random queries."""
    import faiss

    pick = np.sort(rng.choice(q.shape[0], min(n, q.shape[0]), replace=False))
    exact = faiss.IndexFlatIP(r.shape[1])
    exact.add(r)
    truth = _filtered(exact, q[pick], 1, None if qg is None else qg[pick], rg)
    hit = found.indices[torch.from_numpy(pick), 0] == truth.indices[:, 0]
    # a tie at the same similarity is a hit too
    same = torch.isclose(found.values[torch.from_numpy(pick), 0], truth.values[:, 0], rtol=0, atol=1e-6)
    return float((hit | same).float().mean()), int(pick.size)
