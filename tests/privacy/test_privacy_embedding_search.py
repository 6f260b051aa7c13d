"""FAISS nearest-embedding search: exact flat search equals the torch search, IVF reports its recall."""

from __future__ import annotations

import pytest
import torch

from uterosynth.privacy.embedding_search import embedding_search
from uterosynth.privacy.similarity import cosine_search


def _features(n: int, seed: int, dim: int = 16) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("grouped", [False, True])
def test_flat_search_equals_the_exact_torch_search(grouped):
    query, ref = _features(50, 0), _features(300, 1)
    groups = {"query_groups": torch.arange(50) % 7, "reference_groups": torch.arange(300) % 7} if grouped else {}
    found, report = embedding_search(query, ref, k=3, index="flat", **groups)
    truth = cosine_search(query, ref, k=3, **groups)
    assert report.index.startswith("faiss flat")
    assert torch.equal(found.indices, truth.indices)
    assert torch.allclose(found.values, truth.values, atol=1e-5)
    if grouped:  # never a neighbour of the query's own group
        assert not ((found.indices % 7) == (torch.arange(50) % 7)[:, None]).any()


def test_auto_switches_to_ivf_and_measures_its_recall():
    ref = _features(4000, 2)
    query = ref[:200] + 0.05 * _features(200, 3)  # near-copies: the true neighbour is unambiguous
    found, report = embedding_search(query, ref, k=1, index="auto", ivf_from=1000, nprobe=8)
    # 4 sqrt(R) = 253 lists, capped at R / 39 (FAISS wants 39 training items per list)
    assert report.index.startswith("faiss IVF") and report.nlist == 4000 // 39 and report.nprobe == 8
    assert report.recall_queries == 200 and report.recall_at_1 >= 0.95
    assert float((found.indices[:, 0] == torch.arange(200)).float().mean()) == pytest.approx(report.recall_at_1)
    assert "recall@1" in report.describe()


def test_torch_index_needs_no_faiss():
    query, ref = _features(5, 4), _features(20, 5)
    found, report = embedding_search(query, ref, k=2, index="torch")
    assert report.index == "torch (exact)" and found.indices.shape == (5, 2)
