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
