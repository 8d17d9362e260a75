"""Search parameters (nprobe, efSearch, quantizer_efSearch): the sweep, applying them, per-call objects.

Parameters are plain dicts such as {"nprobe": 16, "quantizer_efSearch": 64} or {"efSearch": 128}, stored
in index.json. `apply_params` sets them on the index (faiss.ParameterSpace understands IDMap wrappers);
`search_parameters(index, params, selector)` builds the per-call, thread-safe SearchParameters object that
also carries an IDSelector for filtered search.
"""
from __future__ import annotations

from typing import Any

import faiss

Params = dict[str, int]


def index_kind(index: faiss.Index) -> str:
    """'ivf', 'hnsw' or 'flat' (anything without search-time knobs)."""
    if faiss.try_extract_index_ivf(index) is not None:
        return "ivf"
    return "hnsw" if isinstance(_hnsw(index), faiss.IndexHNSW) else "flat"


def _hnsw(index: faiss.Index) -> faiss.IndexHNSW:
    return faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index


def _ivf_has_hnsw_quantizer(index: faiss.Index) -> bool:
    ivf = faiss.try_extract_index_ivf(index)
    return ivf is not None and isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW)


def sweep(index: faiss.Index, k: int = 10) -> list[Params]:
    """Candidate settings from cheapest to most thorough (the tuner keeps the first that reaches target)."""
    kind = index_kind(index)
    if kind == "ivf":
        nlist = faiss.try_extract_index_ivf(index).nlist
        values = [p for p in (1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 384, 512, 1024, 2048) if p < nlist]
        values.append(nlist)
        if _ivf_has_hnsw_quantizer(index):  # autofaiss: quantizer efSearch = 2 x nprobe
            return [{"nprobe": p, "quantizer_efSearch": max(64, 2 * p)} for p in values]
        return [{"nprobe": p} for p in values]
    if kind == "hnsw":
        return [{"efSearch": e} for e in (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024) if e >= k]
    return [{}]


def exhaustive(index: faiss.Index) -> Params:
    """The setting that visits everything an approximate index can visit (small filtered searches)."""
    kind = index_kind(index)
    if kind == "ivf":
        nlist = faiss.try_extract_index_ivf(index).nlist
        params: Params = {"nprobe": nlist}
        if _ivf_has_hnsw_quantizer(index):
            params["quantizer_efSearch"] = max(64, nlist)
        return params
    return {}


def apply_params(index: faiss.Index, params: Params) -> None:
    if params:
        spec = ",".join(f"{name}={value}" for name, value in params.items())
        faiss.ParameterSpace().set_index_parameters(index, spec)


def search_parameters(index: faiss.Index, params: Params, selector: Any = None) -> faiss.SearchParameters:
    """A per-call SearchParameters of the right type holding `params` and an optional IDSelector."""
    kind = index_kind(index)
    if kind == "ivf":
        out = faiss.SearchParametersIVF()
        out.nprobe = int(params.get("nprobe", faiss.try_extract_index_ivf(index).nprobe))
        if "quantizer_efSearch" in params:
            quantizer = faiss.SearchParametersHNSW()
            quantizer.efSearch = int(params["quantizer_efSearch"])
            out.quantizer_params = quantizer
            out._quantizer_params_ref = quantizer  # keep the Python object alive as long as `out`
    elif kind == "hnsw":
        out = faiss.SearchParametersHNSW()
        out.efSearch = int(params.get("efSearch", _hnsw(index).hnsw.efSearch))
    else:
        out = faiss.SearchParameters()
    if selector is not None:
        out.sel = selector
        out._selector_ref = selector
    return out


__all__ = ["Params", "apply_params", "exhaustive", "index_kind", "search_parameters", "sweep"]
