"""Exact all-pairs nearest-neighbour search for the memorisation audit, written as matrix products.

Three similarity measures between a query image ``x`` (synthetic or held-out real) and a
reference image ``y`` (training), all of shape ``(*spatial)`` with ``spatial_dims`` 2 or 3:

* **NCC** (normalised cross-correlation, Pearson r) on a common *working grid* (images are
  area-averaged to at most ``ncc_size`` voxels per axis), maximised over integer shifts of up
  to ``max_shift`` working voxels along every axis and over mirror images (``flip_axes``).
  With the reference cropped to its central window (``max_shift`` voxels off every side) and
  every shifted / flipped window of the query z-normalised to a unit vector, the correlation
  of a pair under one alignment is one dot product, so all pairs under all alignments are
  ``C`` matrix products ``(B, D) @ (D, R)`` per block, ``C = (2 max_shift + 1)^dims *
  (1 + len(flip_axes))``. The search visits every pair (exact, no index, no sampling) in
  blocks whose size bounds memory, keeping a running top-k per query.
* **Zoom NCC**: NCC between the query shrunk to a fraction ``c`` of its side (``scales``) and
  every window of that size inside the reference, over mirror images: what a crop of a training
  image enlarged back to full size matches. The reference windows are the second axis of the
  same blockwise matrix products.
* **Cosine similarity of embeddings** from a :class:`~uterosynth.models.extractor.FeatureExtractor`:
  one matrix product of L2-normalised features, same blockwise top-k.
* **SSIM** (Wang et al. 2004, IEEE TIP 13(4), eq. 13 with a uniform ``window``-voxel window,
  the sample covariance and ``K1=0.01, K2=0.03``, i.e. ``skimage.metrics.structural_similarity``
  defaults), maximised over the same mirror images. SSIM is a mean of per-window *ratios*, so
  it is not a matrix product. Local means and variances are pooled once per image; only the
  cross term ``pool(x * y)`` is pair-specific. It is computed exactly, vectorised, for a
  *shortlist* of candidates per query (the top-k under NCC with and without shifts and under
  the embedding; each distinct candidate scored once), and the best of them is reported. Near-copies, the pairs that matter, rank at the top of NCC, so
  they are on the shortlist; tests compare the shortlist answer with brute-force SSIM over
  all pairs.

No maintained library does blockwise exact top-k NCC with shift/flip search or shortlisted
pairwise SSIM on torch tensors (FAISS indexes plain vectors, skimage's SSIM is one pair at a
time), hence this module.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.errors import ConfigError, DataError

__all__ = [
    "Alignment",
    "Neighbours",
    "alignments",
    "cosine_search",
    "default_flip_axes",
    "dense_zoom_scales",
    "embed",
    "ncc_search",
    "ssim_pairs",
    "ssim_search",
    "to_working_grid",
    "zoom_alignment",
    "zoom_refine",
    "zoom_search",
]

_EPS = 1e-8


@dataclass(frozen=True)
class Alignment:
    """How a query is moved before it is compared: mirrored along ``flip_axis`` (a spatial axis,
    ``None`` for none), then its window taken ``shift`` voxels away from the centre."""

    flip_axis: int | None
    shift: tuple[int, ...]

    def as_dict(self) -> dict:
        return {"flip_axis": self.flip_axis, "shift": list(self.shift)}


@dataclass(frozen=True)
class Neighbours:
    """The ``k`` most similar reference items per query, best first.

    Attributes:
        values: ``(Q, k)`` similarities (``-inf`` where fewer than ``k`` references qualified).
        indices: ``(Q, k)`` reference indices (``-1`` where none).
        transforms: ``(Q, k)`` index of the :class:`Alignment` (NCC) or flip (SSIM) that gave
            the value; zeros for measures without alignment.
    """

    values: torch.Tensor
    indices: torch.Tensor
    transforms: torch.Tensor

    @property
    def best(self) -> torch.Tensor:
        """``(Q,)`` similarity to the nearest reference."""
        return self.values[:, 0]


def default_flip_axes(spatial_dims: int) -> tuple[int, ...]:
    """Mirror images searched by default: the image's horizontal axis (array axis 1) for slices;
    for volumes also the slice axis (axis 2, the patient's left-right)."""
    return (1,) if spatial_dims == 2 else (1, 2)


def alignments(spatial_dims: int, max_shift: int, flip_axes: Sequence[int]) -> list[Alignment]:
    """Every (flip, shift) combination searched; the identity comes first."""
    shifts = list(itertools.product(range(-max_shift, max_shift + 1), repeat=spatial_dims))
    shifts.sort(key=lambda s: sum(abs(v) for v in s))
    flips: list[int | None] = [None, *flip_axes]
    return [Alignment(f, s) for f in flips for s in shifts]


def to_working_grid(images: torch.Tensor, size: int) -> torch.Tensor:
    """Area-average ``(N, *spatial)`` images to at most ``size`` voxels per axis (never upsampled)."""
    spatial = images.shape[1:]
    target = tuple(min(int(s), size) for s in spatial)
    if target == tuple(spatial):
        return images.float()
    pool = F.adaptive_avg_pool2d if len(spatial) == 2 else F.adaptive_avg_pool3d
    return pool(images.float().unsqueeze(1), target).squeeze(1)


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Z-normalise rows of ``(N, D)`` to unit L2 norm; constant rows become zero vectors."""
    x = x - x.mean(dim=1, keepdim=True)
    norm = x.norm(dim=1, keepdim=True)
    return torch.where(norm > _EPS * x.shape[1] ** 0.5, x / norm.clamp_min(_EPS), torch.zeros_like(x))


def _window(images: torch.Tensor, margin: int, shift: Sequence[int]) -> torch.Tensor:
    """``(N, *spatial)`` → the window ``margin`` voxels in from every side, moved by ``shift``."""
    index = [slice(None)]
    for size, s in zip(images.shape[1:], shift, strict=True):
        index.append(slice(margin + s, size - margin + s))
    return images[tuple(index)]


def _search(
    views: Callable[[torch.Tensor], torch.Tensor],
    query: torch.Tensor,
    reference: torch.Tensor,
    *,
    n_views: int,
    k: int,
    query_groups: torch.Tensor | None,
    reference_groups: torch.Tensor | None,
    block_elements: int,
    reference_views: Callable[[torch.Tensor], torch.Tensor] | None = None,
    n_reference_views: int = 1,
) -> Neighbours:
    """Blockwise exact top-k of ``max_{view, reference view} <view(q), r>`` over all query/reference pairs.

    Args:
        views: maps a block of queries to ``(n_views, B, D)`` unit rows.
        query: ``(Q, ...)`` raw queries (sliced into blocks and passed to ``views``).
        reference: ``(R, D)`` unit rows, or raw references for ``reference_views``.
        reference_views: maps a block of references to ``(Rb, n_reference_views, D)`` unit rows
            (windows of each reference); ``None``: ``reference`` holds the unit rows.
        query_groups, reference_groups: ``(Q,)`` / ``(R,)`` integer groups (subjects); pairs in
            the same group are never neighbours.
        block_elements: the largest score block ``n_views * B * R_block * n_reference_views`` held at once.

    ``transforms`` index the view, ``view * n_reference_views + reference view``.
    """
    n_query, n_ref = query.shape[0], reference.shape[0]
    p = n_reference_views
    k = min(k, n_ref)
    ref_block = max(1, min(n_ref, 8192 // p))
    q_block = max(1, block_elements // (n_views * ref_block * p))
    values = torch.full((n_query, k), -torch.inf)
    indices = torch.full((n_query, k), -1, dtype=torch.long)
    transforms = torch.zeros((n_query, k), dtype=torch.long)
    ref_blocks = [(r0, min(r0 + ref_block, n_ref)) for r0 in range(0, n_ref, ref_block)]
    ref_rows = None if reference_views is not None or len(ref_blocks) > 1 else reference
    for q0 in range(0, n_query, q_block):
        q1 = min(q0 + q_block, n_query)
        qv = views(query[q0:q1])  # (C, B, D)
        c, b, d = qv.shape
        best_v = torch.full((b, k), -torch.inf)
        best_i = torch.full((b, k), -1, dtype=torch.long)
        best_t = torch.zeros((b, k), dtype=torch.long)
        for r0, r1 in ref_blocks:
            rows = ref_rows if ref_rows is not None else (
                reference[r0:r1] if reference_views is None else reference_views(reference[r0:r1]).reshape(-1, d))
            scores = (qv.reshape(c * b, d) @ rows.T).view(c, b, r1 - r0, p)
            if p == 1:
                tile, arg = scores[..., 0].max(dim=0)  # (B, Rb)
            else:  # best reference window, then best view, without copying the block
                per_view, window = scores.max(dim=3)
                tile, view = per_view.max(dim=0)
                arg = view * p + window.gather(0, view[None])[0]
            if query_groups is not None and reference_groups is not None:
                same = query_groups[q0:q1, None] == reference_groups[None, r0:r1]
                tile = tile.masked_fill(same, -torch.inf)
            kk = min(k, r1 - r0)
            tv, ti = tile.topk(kk, dim=1)
            tt = arg.gather(1, ti)
            allv = torch.cat([best_v, tv], dim=1)
            alli = torch.cat([best_i, ti + r0], dim=1)
            allt = torch.cat([best_t, tt], dim=1)
            order = allv.topk(k, dim=1).indices
            best_v, best_i, best_t = allv.gather(1, order), alli.gather(1, order), allt.gather(1, order)
        best_i = torch.where(torch.isinf(best_v), torch.full_like(best_i, -1), best_i)
        values[q0:q1], indices[q0:q1], transforms[q0:q1] = best_v, best_i, best_t
    return Neighbours(values, indices, transforms)


def _groups(groups: Sequence[int] | torch.Tensor | None) -> torch.Tensor | None:
    return None if groups is None else torch.as_tensor(groups, dtype=torch.long)


def ncc_search(
    query: torch.Tensor,
    reference: torch.Tensor,
    *,
    k: int = 1,
    max_shift: int = 1,
    flip_axes: Sequence[int] = (),
    query_groups: Sequence[int] | torch.Tensor | None = None,
    reference_groups: Sequence[int] | torch.Tensor | None = None,
    block_elements: int = 1 << 25,
) -> Neighbours:
    """Exact top-k references under NCC maximised over shifts and mirror images.

    Args:
        query: ``(Q, *grid)`` images on the working grid (see :func:`to_working_grid`).
        reference: ``(R, *grid)`` images on the same grid.
        k: neighbours kept per query.
        max_shift: largest shift searched along each axis, in working voxels.
        flip_axes: spatial axes (0-based, without the batch axis) whose mirror is also searched.
        query_groups, reference_groups: subject codes; same-subject pairs are skipped.
        block_elements: memory bound of one score block (floats).

    Returns:
        :class:`Neighbours`; ``transforms`` index ``alignments(dims, max_shift, flip_axes)``.

    Raises:
        DataError: the grids differ.
        ConfigError: they are too small for ``max_shift``.
    """
    if query.shape[1:] != reference.shape[1:]:
        raise DataError(
            f"NCC search: synthetic items {tuple(query.shape[1:])} and training items {tuple(reference.shape[1:])} "
            "differ in shape; audit items of one shape (resample the synthetic set to the training grid)"
        )
    spatial_dims = query.dim() - 1
    if min(query.shape[1:]) <= 2 * max_shift + 1:
        raise ConfigError(f"NCC search: grid {tuple(query.shape[1:])} is too small for max_shift={max_shift}; "
                          "lower max_shift")
    aligns = alignments(spatial_dims, max_shift, flip_axes)
    ref = _unit_rows(_window(reference.float(), max_shift, (0,) * spatial_dims).flatten(1))

    def views(block: torch.Tensor) -> torch.Tensor:
        out = []
        for a in aligns:
            moved = block.float() if a.flip_axis is None else block.float().flip(a.flip_axis + 1)
            out.append(_unit_rows(_window(moved, max_shift, a.shift).flatten(1)))
        return torch.stack(out)

    return _search(views, query, ref, n_views=len(aligns), k=k, query_groups=_groups(query_groups),
                   reference_groups=_groups(reference_groups), block_elements=block_elements)


def _zoom_size(grid: Sequence[int], scale: float) -> tuple[int, ...]:
    return tuple(max(2, min(int(g), round(scale * int(g)))) for g in grid)


def dense_zoom_scales(scales: Sequence[float], grid: Sequence[int]) -> list[float]:
    """Every window size on ``grid`` from the smallest to the largest of ``scales``, as scales of its longest
    side, and the listed scales themselves (one per distinct window shape, smallest first). A crop whose side
    falls between two listed scales is scored at its own size, as an exact copy is: on a 32 grid the listed 0.8
    and 0.9 leave 0.85 crops about 0.1 NCC below."""
    longest = max(int(g) for g in grid)
    first, last = round(min(scales) * longest), round(max(scales) * longest)
    out: dict[tuple[int, ...], float] = {}
    for scale in sorted([*(side / longest for side in range(first, last + 1)), *scales]):
        out.setdefault(_zoom_size(grid, scale), scale)
    return list(out.values())


def _windows_per_scale(grid: Sequence[int], scale: float) -> int:
    return math.prod(int(g) - s + 1 for g, s in zip(grid, _zoom_size(grid, scale), strict=True))


def zoom_alignment(index: int, *, grid: Sequence[int], scales: Sequence[float], flip_axes: Sequence[int]) -> dict:
    """What :func:`zoom_search`'s transform ``index`` means: the scale, the mirror axis and the window's corner
    in the reference (working-grid voxels)."""
    flips: list[int | None] = [None, *flip_axes]
    for scale in scales:
        size = _zoom_size(grid, scale)
        per_flip = _windows_per_scale(grid, scale)
        if index < per_flip * len(flips):
            view, window = divmod(int(index), per_flip)
            counts = [int(g) - s + 1 for g, s in zip(grid, size, strict=True)]
            corner = []
            for n in reversed(counts):
                window, r = divmod(window, n)
                corner.append(r)
            return {"scale": float(scale), "flip_axis": flips[view], "corner": corner[::-1]}
        index -= per_flip * len(flips)
    raise ValueError(f"zoom transform {index} is out of range")


def zoom_search(
    query: torch.Tensor,
    reference: torch.Tensor,
    *,
    scales: Sequence[float],
    k: int = 1,
    flip_axes: Sequence[int] = (),
    query_groups: Sequence[int] | torch.Tensor | None = None,
    reference_groups: Sequence[int] | torch.Tensor | None = None,
    block_elements: int = 1 << 25,
) -> Neighbours:
    """Exact top-k references under NCC of the shrunk query against every window of the reference.

    For each ``scale`` the query (and its mirror images) is area-averaged to ``scale`` of its side
    and correlated with every window of that size in the reference (stride one working voxel);
    the best over scales, mirrors and windows is kept. A copy made by cropping ``scale`` of a
    training image's side and enlarging it back scores as high as an exact copy does under NCC.

    Args:
        query, reference: ``(Q, *grid)`` / ``(R, *grid)`` images on one working grid.
        scales: fractions of the side in ``(0, 1)``.

    Returns:
        :class:`Neighbours`; ``transforms`` decode with :func:`zoom_alignment`.

    Raises:
        DataError: the grids differ. ConfigError: a scale outside ``(0, 1)``.
    """
    if query.shape[1:] != reference.shape[1:]:
        raise DataError(f"zoom NCC: synthetic items {tuple(query.shape[1:])} and training items "
                        f"{tuple(reference.shape[1:])} differ in shape")
    if not scales or any(not 0 < c < 1 for c in scales):
        raise ConfigError(f"zoom_scales {list(scales)}: give fractions of the side between 0 and 1", keys=("zoom_scales",))
    grid = tuple(int(g) for g in query.shape[1:])
    parts, base = [], 0
    for scale in scales:
        size = _zoom_size(grid, scale)
        n_windows = _windows_per_scale(grid, scale)
        found = _search(lambda b, size=size: _zoom_views(b, size, flip_axes), query, reference,
                        n_views=1 + len(flip_axes), k=k, query_groups=_groups(query_groups),
                        reference_groups=_groups(reference_groups), block_elements=block_elements,
                        reference_views=lambda b, size=size: _zoom_windows(b, size), n_reference_views=n_windows)
        parts.append(Neighbours(found.values, found.indices, found.transforms + base))
        base += (1 + len(flip_axes)) * n_windows
    return _merge(parts, k)


def zoom_refine(
    query: torch.Tensor,
    reference: torch.Tensor,
    candidates: torch.Tensor,
    *,
    scales: Sequence[float],
    flip_axes: Sequence[int] = (),
    block_pairs: int = 256,
    block_elements: int = 1 << 25,
) -> Neighbours:
    """:func:`zoom_search`'s similarity, exactly, for each query's ``candidates`` only (``(Q, K)`` reference
    indices, ``-1`` skipped): the best candidate per query, with its transform (decoded by
    :func:`zoom_alignment` on this grid). A coarse zoom search shortlists, this scores on a finer grid.
    At most ``block_pairs`` query-candidate pairs, and ``block_elements`` window values, at a time."""
    if query.shape[1:] != reference.shape[1:]:
        raise DataError(f"zoom NCC: synthetic items {tuple(query.shape[1:])} and training items "
                        f"{tuple(reference.shape[1:])} differ in shape")
    grid = tuple(int(g) for g in query.shape[1:])
    n_query, n_cand = candidates.shape
    values = torch.full((n_query, 1), -torch.inf)
    indices = torch.full((n_query, 1), -1, dtype=torch.long)
    transforms = torch.zeros((n_query, 1), dtype=torch.long)
    q_block = max(1, block_pairs // max(1, n_cand))
    for q0 in range(0, n_query, q_block):
        q1 = min(q0 + q_block, n_query)
        cand = _drop_repeats(candidates[q0:q1])
        rows, cols = torch.nonzero(cand >= 0, as_tuple=True)
        if len(rows) == 0:  # no candidate in this block (every item of the query's own subject)
            continue
        refs = cand[rows, cols]
        pair_best = torch.full((len(refs),), -torch.inf)
        pair_t = torch.zeros(len(refs), dtype=torch.long)
        base = 0
        for scale in scales:
            size = _zoom_size(grid, scale)
            views = _zoom_views(query[q0:q1], size, flip_axes)[:, rows]  # (C, P, D)
            n_windows = math.prod(g - s + 1 for g, s in zip(grid, size, strict=True))
            step = max(1, block_elements // (n_windows * views.shape[0]))
            for p0 in range(0, len(refs), step):
                scores = _window_scores(views[:, p0:p0 + step], reference[refs[p0:p0 + step]], size).flatten(1)
                best, where = scores.max(dim=1)
                better = best > pair_best[p0:p0 + step]
                pair_best[p0:p0 + step] = torch.where(better, best, pair_best[p0:p0 + step])
                pair_t[p0:p0 + step] = torch.where(better, where + base, pair_t[p0:p0 + step])
            base += views.shape[0] * n_windows
        per_cand = torch.full(cand.shape, -torch.inf)
        per_cand[rows, cols] = pair_best
        t = torch.zeros(cand.shape, dtype=torch.long)
        t[rows, cols] = pair_t
        best, pos = per_cand.max(dim=1)
        values[q0:q1, 0] = best
        indices[q0:q1, 0] = torch.where(torch.isinf(best), torch.full_like(pos, -1), cand.gather(1, pos[:, None])[:, 0])
        transforms[q0:q1, 0] = t.gather(1, pos[:, None])[:, 0]
    return Neighbours(values, indices, transforms)


def _zoom_views(block: torch.Tensor, size: tuple[int, ...], flip_axes: Sequence[int]) -> torch.Tensor:
    """``(1 + flips, B, prod(size))`` unit rows: the queries (and their mirror images) area-shrunk to ``size``."""
    pool = F.adaptive_avg_pool2d if len(size) == 2 else F.adaptive_avg_pool3d
    out = []
    for axis in (None, *flip_axes):
        moved = block.float() if axis is None else block.float().flip(axis + 1)
        out.append(_unit_rows(pool(moved.unsqueeze(1), size).flatten(1)))
    return torch.stack(out)


def _window_scores(views: torch.Tensor, references: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """``(P, C, windows)``: NCC of each pair's views ``(C, P, D)`` (unit rows) with every ``size`` window of its
    reference ``(P, *grid)``, as :func:`_zoom_windows` would score them, without materialising the windows: a
    grouped convolution gives each window's dot product with the zero-mean view, box sums its norm."""
    conv, pool = (F.conv2d, F.avg_pool2d) if len(size) == 2 else (F.conv3d, F.avg_pool3d)
    n_views, n_pairs, n = views.shape[0], views.shape[1], math.prod(size)
    x = references.float()
    kernels = views.permute(1, 0, 2).reshape(n_pairs * n_views, 1, *size)
    dots = conv(x.unsqueeze(0), kernels, groups=n_pairs)[0].reshape(n_pairs, n_views, -1)
    wide = x.double().unsqueeze(1)
    wide = wide - wide.flatten(1).mean(dim=1).view(-1, *[1] * (wide.dim() - 1))  # smaller sums, less cancellation
    sums = pool(wide, size, stride=1).flatten(1) * n
    squares = pool(wide * wide, size, stride=1).flatten(1) * n
    spread = squares - sums * sums / n
    # a constant window scores 0, as _unit_rows makes it a zero row; the relative term absorbs the rounding of
    # the two sums, so a constant window of any value is caught
    flat = spread <= torch.maximum(torch.full_like(spread, _EPS**2 * n), 1e-12 * squares)
    norm = spread.clamp_min(0).sqrt().float()
    return torch.where(flat[:, None], torch.zeros_like(dots), dots / norm.clamp_min(_EPS)[:, None])


def _zoom_windows(block: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """``(R, windows, prod(size))`` unit rows: every ``size`` window of each reference (stride one voxel)."""
    x = block.float()
    for axis, s in enumerate(size, start=1):
        x = x.unfold(axis, s, 1)
    rows = x.reshape(x.shape[0], -1, math.prod(size))
    return _unit_rows(rows.reshape(-1, rows.shape[2])).view(rows.shape)


def _merge(parts: Sequence[Neighbours], k: int) -> Neighbours:
    """The ``k`` best distinct references per query over several searches (the best value of each)."""
    values = torch.cat([p.values for p in parts], dim=1)
    indices = torch.cat([p.indices for p in parts], dim=1)
    transforms = torch.cat([p.transforms for p in parts], dim=1)
    order = values.argsort(dim=1, descending=True, stable=True)
    values, indices, transforms = values.gather(1, order), indices.gather(1, order), transforms.gather(1, order)
    by_index, where = indices.sort(dim=1, stable=True)  # a repeat after its best occurrence is dropped
    repeat = torch.cat([torch.zeros_like(by_index[:, :1], dtype=torch.bool), by_index[:, 1:] == by_index[:, :-1]], dim=1)
    values = values.masked_fill(torch.zeros_like(repeat).scatter_(1, where, repeat), -torch.inf)
    keep = values.topk(min(k, values.shape[1]), dim=1)
    indices, transforms = indices.gather(1, keep.indices), transforms.gather(1, keep.indices)
    indices = torch.where(torch.isinf(keep.values), torch.full_like(indices, -1), indices)
    return Neighbours(keep.values, indices, transforms)


def cosine_search(
    query: torch.Tensor,
    reference: torch.Tensor,
    *,
    k: int = 1,
    query_groups: Sequence[int] | torch.Tensor | None = None,
    reference_groups: Sequence[int] | torch.Tensor | None = None,
    block_elements: int = 1 << 25,
) -> Neighbours:
    """Exact top-k references under cosine similarity of feature vectors ``(Q, F)`` / ``(R, F)``."""
    if query.shape[1] != reference.shape[1]:
        raise DataError(f"embedding search: feature sizes differ ({query.shape[1]} vs {reference.shape[1]})")
    ref = F.normalize(reference.float(), dim=1)
    return _search(lambda b: F.normalize(b.float(), dim=1).unsqueeze(0), query, ref, n_views=1, k=k,
                   query_groups=_groups(query_groups), reference_groups=_groups(reference_groups),
                   block_elements=block_elements)


def _pool(x: torch.Tensor, window: int) -> torch.Tensor:
    """Uniform mean over every complete ``window``-voxel window of ``(N, *spatial)``.

    Separable sums of shifted views, one axis at a time (``window`` additions per voxel and
    axis; about twice as fast on CPU as ``avg_pool2d``, which is also used nowhere else).
    """
    out = x
    for axis in range(1, x.dim()):
        n = out.shape[axis] - window + 1
        acc = out.narrow(axis, 0, n).clone()
        for d in range(1, window):
            acc += out.narrow(axis, d, n)
        out = acc
    return out / window ** (x.dim() - 1)


def _ssim_window(spatial: Sequence[int], window: int) -> int:
    w = min(window, *spatial)
    return w if w % 2 == 1 else w - 1


def ssim_pairs(x: torch.Tensor, y: torch.Tensor, *, window: int = 7, data_range: float = 1.0) -> torch.Tensor:
    """SSIM of each pair ``(x[p], y[p])``; ``x, y`` are ``(P, *spatial)``; returns ``(P,)``.

    Same value as ``skimage.metrics.structural_similarity(x[p], y[p], data_range=data_range,
    win_size=window)`` (uniform window, sample covariance, mean over complete windows).
    """
    window = _ssim_window(x.shape[1:], window)
    x, y = x.float(), y.float()
    mx, my = _pool(x, window), _pool(y, window)
    mxx, myy, mxy = _pool(x * x, window), _pool(y * y, window), _pool(x * y, window)
    return _ssim_from_moments(mx, my, mxx - mx * mx, myy - my * my, mxy - mx * my, window, x.dim() - 1, data_range)


def _ssim_from_moments(mx, my, vx, vy, cxy, window, spatial_dims, data_range):
    n = window**spatial_dims
    cov_norm = n / (n - 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vx, vy, cxy = cov_norm * vx, cov_norm * vy, cov_norm * cxy
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(dim=1)


def ssim_search(
    query: torch.Tensor,
    reference: torch.Tensor,
    candidates: torch.Tensor,
    *,
    window: int = 7,
    data_range: float = 1.0,
    flip_axes: Sequence[int] = (),
    block_pairs: int = 1024,
    k: int = 1,
) -> Neighbours:
    """The ``k`` most SSIM-similar references among ``candidates`` for each query (exact on the shortlist).

    Args:
        query: ``(Q, *spatial)`` images.
        reference: ``(R, *spatial)`` images.
        candidates: ``(Q, K)`` reference indices to score (``-1`` entries are skipped). Pass
            ``torch.arange(R).expand(Q, R)`` for brute force over all pairs.
        window: SSIM window side (voxels).
        flip_axes: mirror images of the query also scored (the best is kept).
        block_pairs: pairs scored at once (memory bound).

    Returns:
        :class:`Neighbours`, best first; ``transforms`` is 0 (as is) or ``1 + i`` (mirrored
        along ``flip_axes[i]``).
    """
    if query.shape[1:] != reference.shape[1:]:
        raise DataError(
            f"SSIM: synthetic items {tuple(query.shape[1:])} and training items {tuple(reference.shape[1:])} differ in shape"
        )
    spatial_dims = query.dim() - 1
    window = _ssim_window(query.shape[1:], window)
    n_query, n_cand = candidates.shape
    ref = reference.float()
    ref_mu = _pool(ref, window)
    ref_var = _pool(ref * ref, window) - ref_mu * ref_mu
    k = max(1, min(k, n_cand))
    values = torch.full((n_query, k), -torch.inf)
    indices = torch.full((n_query, k), -1, dtype=torch.long)
    transforms = torch.zeros((n_query, k), dtype=torch.long)
    n_views = 1 + len(flip_axes)
    q_block = max(1, block_pairs // max(1, n_cand * n_views))
    n = window**spatial_dims
    cov = n / (n - 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    for q0 in range(0, n_query, q_block):
        q1 = min(q0 + q_block, n_query)
        qb = query[q0:q1].float()
        b = qb.shape[0]
        cand = _drop_repeats(candidates[q0:q1])  # the shortlist merges several rankings
        rows, cols = torch.nonzero(cand >= 0, as_tuple=True)
        refs = cand[rows, cols]
        qviews = torch.stack([qb] + [qb.flip(a + 1) for a in flip_axes], dim=1)  # (B, V, *sp)
        q_mu = _pool(qviews.flatten(0, 1), window)
        q_var = (_pool(qviews.flatten(0, 1).square(), window) - q_mu.square()).view(b, n_views, *q_mu.shape[1:])[rows]
        q_mu = q_mu.view(b, n_views, *q_mu.shape[1:])[rows]  # (P, V, *p)
        y_mu, y_var = ref_mu[refs].unsqueeze(1), ref_var[refs].unsqueeze(1)  # (P, 1, *p)
        prod = qviews[rows] * ref[refs].unsqueeze(1)  # (P, V, *sp)
        cxy = _pool(prod.flatten(0, 1), window).view_as(q_mu)
        del prod
        mu_xy = q_mu * y_mu
        # SSIM = (2 mu_x mu_y + C1)(2 cov_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2)), in place
        num = cxy.sub_(mu_xy).mul_(2 * cov).add_(c2).mul_(mu_xy.mul(2).add_(c1))
        den = (q_var + y_var).mul_(cov).add_(c2).mul_(q_mu.square() + y_mu.square() + c1)
        pair_best, pair_view = num.div_(den).flatten(2).mean(dim=2).max(dim=1)  # (P,)
        per_cand = torch.full((b, n_cand), -torch.inf)
        per_cand[rows, cols] = pair_best
        view = torch.zeros((b, n_cand), dtype=torch.long)
        view[rows, cols] = pair_view
        best, pos = per_cand.topk(k, dim=1)
        values[q0:q1] = best
        indices[q0:q1] = torch.where(torch.isinf(best), torch.full_like(pos, -1), cand.gather(1, pos))
        transforms[q0:q1] = view.gather(1, pos)
    return Neighbours(values, indices, transforms)


def _drop_repeats(cand: torch.Tensor) -> torch.Tensor:
    """``(B, K)`` candidate indices with repeats within a row replaced by ``-1``."""
    srt, order = cand.sort(dim=1)
    repeat = torch.cat([torch.zeros_like(srt[:, :1], dtype=torch.bool), srt[:, 1:] == srt[:, :-1]], dim=1)
    return cand.masked_fill(torch.zeros_like(repeat).scatter_(1, order, repeat), -1)


@torch.inference_mode()
def embed(extractor: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """Features ``(N, F)`` of images ``(N, *spatial)`` in ``[0, 1]`` (a channel axis is added)."""
    chunks = []
    for i in range(0, images.shape[0], batch_size):
        feats = extractor(images[i : i + batch_size].float().unsqueeze(1))
        chunks.append(torch.as_tensor(feats).float().flatten(1).cpu())
    return torch.cat(chunks)
