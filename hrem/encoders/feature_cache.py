"""An in-memory cache of a FROZEN text backbone's token states, keyed by a caption's token ids.

A frozen backbone (in eval mode, no gradients) maps the same token ids to the same states, so a training
run on templated captions (ShapesRef repeats many) and its repeated dev evaluations need not run it twice
for one caption. Only the valid (unpadded) tokens are stored; a lookup recomputes the missing captions
as one sub-batch and returns the padded [B, L, H] batch with zeros at padding positions (every consumer
masks padding). The trainable parts after the backbone still run on every call.

Entries are evicted least-recently-used beyond `max_entries`. Stored tensors are detached plain tensors
(never inference-mode tensors), so cached states can feed a layer that is being trained.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Callable

import torch

BackboneFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class FrozenFeatureCache:
    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"feature cache max_entries: expected >= 1, found {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _store(self, key: bytes, states: torch.Tensor) -> None:
        self._entries[key] = states
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    @staticmethod
    def _compute(input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: list[int], keys: list[bytes],
                 backbone: BackboneFn) -> dict[bytes, torch.Tensor]:
        sub_ids, sub_mask = input_ids[rows], attention_mask[rows]
        width = int(sub_mask.sum(dim=1).max())          # drop padding columns no missing caption needs
        with torch.no_grad():
            states = backbone(sub_ids[:, :width], sub_mask[:, :width])
        with torch.inference_mode(False):                # plain tensors even when called in inference mode
            return {keys[row]: states[i, : int(attention_mask[row].bool().sum())].clone()
                    for i, row in enumerate(rows)}

    def lookup(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, backbone: BackboneFn) -> torch.Tensor:
        """[B, L, H] states of `backbone(input_ids, attention_mask)`, computing only uncached captions."""
        masks = attention_mask.bool()
        keys = [ids[m].cpu().numpy().tobytes() for ids, m in zip(input_ids, masks)]
        missing = {key: row for row, key in enumerate(keys) if key not in self._entries}
        fresh = self._compute(input_ids, attention_mask, list(missing.values()), keys, backbone) if missing else {}
        self.misses += sum(key in fresh for key in keys)
        self.hits += sum(key not in fresh for key in keys)
        cached = [fresh[key] if key in fresh else self._entries[key] for key in keys]
        for key, states in zip(keys, cached):
            self._entries.pop(key, None)
            self._store(key, states)                   # (re)insert as most recently used
        out = cached[0].new_zeros((len(keys), input_ids.shape[1], cached[0].shape[-1]))
        for row, (states, valid) in enumerate(zip(cached, masks)):
            out[row, valid] = states
        return out

    # -- persistence: several runs on one dataset share the states instead of each recomputing them --
    def save(self, path: str | Path, identity: str) -> None:
        """Write every entry to `path` (safetensors, atomically); `identity` names the backbone (its weights'
        SHA-256) so a file made by another backbone is never loaded."""
        from safetensors.torch import save_file

        from hrem.utils.files import atomic_path

        keys = list(self._entries)
        ids = [torch.frombuffer(bytearray(k), dtype=torch.int64) for k in keys]
        lengths = torch.tensor([len(i) for i in ids], dtype=torch.int64)
        tensors = {"ids": torch.cat(ids) if ids else torch.zeros(0, dtype=torch.int64), "lengths": lengths,
                   "states": torch.cat([self._entries[k] for k in keys]) if keys else torch.zeros(0, 1)}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"identity": identity, "format": "hrem-text-cache"})

    def load(self, path: str | Path, identity: str) -> int:
        """Add the entries of a file written by `save` for the same backbone; returns how many."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            found = (handle.metadata() or {}).get("identity")
            if found != identity:
                raise ValueError(f"{path}: text-state cache of backbone {found!r}, this model's backbone is "
                                 f"{identity!r}; delete the file or use another --text-cache")
            ids, lengths, states = (handle.get_tensor(n) for n in ("ids", "lengths", "states"))
        offsets = torch.cumsum(lengths, 0) - lengths
        for start, n in zip(offsets.tolist(), lengths.tolist()):
            self._store(ids[start:start + n].numpy().tobytes(), states[start:start + n].clone())
        return len(lengths)
