"""The frozen-trunk cache: compute the frozen layers once per market prefix and reuse them for every episode.

FLAG-Trader freezes layers 1..N, and lang(s_t) starts with a *market prefix* (task, actions, market JSON) whose tokens
depend only on (asset, date, trading mode, prompt settings) (`flagtrl.prompt.EncodedPrompt`). Every episode that meets
a date sees the same prefix, so the frozen layers' keys and values over it are the same too. `TrunkCache` keeps, per
prefix, the key/value states of every frozen layer and the prefix's h1 (the hidden states after layer N); a prompt then
only sends its *account suffix* through the frozen layers, attending to the cached prefix with positions that continue
after it (RoPE), exactly as the full forward would.

Invalidation: an entry is keyed by the prefix's `market_key` and its token ids, so another prompt version, tokenizer or
setting can never hit a stale entry; and the cache belongs to one frozen trunk: a different backbone, dtype, device, or
an in-place change of a frozen weight empties it (`trunk_fingerprint`).

Shared stem: every date's prefix of one asset (same trading mode and prompt settings) starts with the same tokens
(the system turn and the start of the user turn, ~150 of SmolLM2's ~220 prefix tokens). Keys, values and h1 of those
tokens depend only on them (causal attention), so once two prefixes of an asset have been computed the cache keeps
their longest common token prefix as the asset's *stem* and computes every further prefix of it as the stem plus its
own tokens (the same suffix pass as an account suffix: exact up to float rounding). `share_stem=False` turns it off;
stems (one per asset) sit outside the memory bound.

Memory: the cache is an LRU bounded by `max_mb`. One entry costs `num_frozen_layers x 2 x kv_heads x head_dim` plus
`hidden_size` values per prefix token: ~11 MB for a 240-token prefix of SmolLM2-135M (28 frozen layers) in float32.
Episodes walk their window day by day, and an LRU smaller than the set of (asset, date) prefixes that the environments
cycle through evicts each entry just before it is needed again: size it to hold the training windows (the trainer
logs `trunk_cache/hit_rate` and warns when it evicts).

`FrozenStates` is what a rollout keeps for the update: h1 of each sample, as the (shared) prefix piece and the suffix
piece, so that the PPO update runs only the trainable top layers.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch


if TYPE_CHECKING:
    from ..prompt import EncodedPrompt
    from .flag_policy import FlagPolicy

logger = logging.getLogger(__name__)

# Attention implementations whose mask format the suffix pass knows how to build (boolean for SDPA, additive for eager).
SUPPORTED_ATTENTION = ("sdpa", "eager")


class FrozenStates:
    """h1 (the frozen trunk's output) of a batch of prompts, row by row.

    A row is a tuple of pieces along the sequence, `(prefix_hidden, suffix_hidden)` from the trunk cache (the prefix
    piece is shared by every row on the same market prefix, not copied) or `(hidden,)` from a full forward; each
    piece is `(length, hidden_size)` in the frozen trunk's dtype, without gradients.

    Args:
        rows (`list[tuple[torch.Tensor, ...]]`): The pieces of each row.
    """

    def __init__(self, rows: list[tuple[torch.Tensor, ...]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def lengths(self) -> list[int]:
        return [sum(piece.shape[0] for piece in row) for row in self.rows]

    def select(self, indices) -> FrozenStates:
        """The rows at `indices` (a list or a 1-D tensor of positions), in that order."""
        return FrozenStates([self.rows[int(i)] for i in indices])

    @classmethod
    def concat(cls, parts: list[FrozenStates]) -> FrozenStates:
        return cls([row for part in parts for row in part.rows])

    def padded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded `hidden` `(batch, length, hidden_size)` and `attention_mask` `(batch, length)`, as `collate`
        pads token ids (the pads are zeros: the top layers never attend to them)."""
        lengths = self.lengths
        first = self.rows[0][0]
        hidden = first.new_zeros((len(self.rows), max(lengths), first.shape[-1]))
        attention_mask = torch.zeros((len(self.rows), max(lengths)), dtype=torch.long, device=first.device)
        for row, (pieces, length) in enumerate(zip(self.rows, lengths)):
            start = 0
            for piece in pieces:
                hidden[row, start : start + piece.shape[0]] = piece
                start += piece.shape[0]
            attention_mask[row, :length] = 1
        return hidden, attention_mask

    def nbytes(self) -> int:
        """Bytes held (a piece shared by several rows, such as a cached prefix, counts once)."""
        seen: dict[int, int] = {}
        for row in self.rows:
            for piece in row:
                storage = piece.untyped_storage()
                seen[storage.data_ptr()] = storage.nbytes()
        return sum(seen.values())


@dataclass
class PrefixEntry:
    """The frozen layers' work on one market prefix.

    Args:
        token_ids (`tuple[int, ...]`): The prefix's tokens (checked on every hit).
        keys (`list[torch.Tensor]`), values (`list[torch.Tensor]`): Per frozen layer, `(1, kv_heads, length, head_dim)`
            after RoPE, as the layer's attention stores them in a transformers cache.
        hidden (`torch.Tensor`): h1 of the prefix, `(length, hidden_size)`.
    """

    token_ids: tuple[int, ...]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    hidden: torch.Tensor

    def __len__(self) -> int:
        return len(self.token_ids)

    def head(self, length: int) -> PrefixEntry:
        """The entry of the first `length` tokens (a copy: causal attention makes them independent of the rest)."""
        return PrefixEntry(
            self.token_ids[:length],
            [k[:, :, :length].clone() for k in self.keys],
            [v[:, :, :length].clone() for v in self.values],
            self.hidden[:length].clone(),
        )

    @property
    def nbytes(self) -> int:
        tensors = [*self.keys, *self.values, self.hidden]
        return sum(t.numel() * t.element_size() for t in tensors)


def trunk_fingerprint(policy: FlagPolicy) -> tuple:
    """What the cached states depend on besides the tokens: which backbone, how many frozen layers, dtype, device,
    and the identity and in-place version counter of every frozen weight (cheap: no tensor is read)."""
    inner = policy.backbone.model
    params = [inner.embed_tokens.weight, *(p for layer in policy.frozen_layers for p in layer.parameters())]
    weights = hash(tuple((p.data_ptr(), p._version) for p in params))
    return (id(policy.backbone), policy.num_frozen_layers, str(params[0].dtype), str(params[0].device), weights)


def supports_trunk_cache(policy: FlagPolicy) -> bool:
    """Whether the suffix pass can run this backbone's frozen layers (a Llama-like decoder with SDPA or eager
    attention and no sliding window shorter than a prompt)."""
    return policy.backbone.config._attn_implementation in SUPPORTED_ATTENTION and not getattr(
        policy.backbone.config, "use_sliding_window", False
    )


class TrunkCache:
    """LRU cache of the frozen layers' states per market prefix (see the module docstring).

    Args:
        max_mb (`float`, *optional*, defaults to `2048`): Memory bound of the cached tensors in MiB; the least recently
            used prefixes are evicted beyond it. `0` caches nothing (every prefix is recomputed, still only once per
            batch).
        batch_suffixes (`bool`, *optional*, defaults to `True`): Run a batch's suffixes through the frozen layers in
            one padded pass (`True`, one batched forward per step of `num_envs` environments) or row by row
            (`False`). On a GPU batching is what fills the device; on a CPU a ~200-token row already makes efficient
            matrix products, and batching still measured 7-13% less CPU time per step than row by row with 4-16
            environments on SmolLM2 (float32, AVX512-BF16 CPU, one thread; `benchmarks/ppo_throughput.py --sections
            num_envs`), the same with 1-2 (an older AVX2 measurement had row by row 6% ahead).
    """

    def __init__(self, max_mb: float = 2048, batch_suffixes: bool = True, share_stem: bool = True):
        if max_mb < 0:
            raise ValueError(f"max_mb must be >= 0, got {max_mb}.")
        self.max_bytes = int(max_mb * 2**20)
        self.batch_suffixes = batch_suffixes
        self.share_stem = share_stem
        self.entries: OrderedDict[tuple, PrefixEntry] = OrderedDict()
        # Per (asset, trading mode, prompt fingerprint): the shared stem, or the first prefix seen (to find it).
        self.stems: dict[tuple, PrefixEntry] = {}
        self._first_prefix: dict[tuple, PrefixEntry] = {}
        self.size_bytes = 0
        self.fingerprint: tuple | None = None
        self.hits = self.misses = self.evictions = self.invalidations = self.stem_hits = 0

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        self.entries.clear()
        self.stems.clear()
        self._first_prefix.clear()
        self.size_bytes = 0

    def bind(self, policy: FlagPolicy) -> None:
        """Empty the cache when the frozen trunk is not the one its entries were computed with."""
        fingerprint = trunk_fingerprint(policy)
        if fingerprint != self.fingerprint:
            if self.entries:
                logger.info("Frozen trunk changed (backbone, dtype, device or weights): emptying the trunk cache.")
                self.invalidations += 1
            self.clear()
            self.fingerprint = fingerprint

    def get(self, key: tuple) -> PrefixEntry | None:
        entry = self.entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self.entries.move_to_end(key)
        return entry

    def put(self, key: tuple, entry: PrefixEntry) -> None:
        if key in self.entries:
            self.size_bytes -= self.entries.pop(key).nbytes
        if entry.nbytes > self.max_bytes:
            return
        self.entries[key] = entry
        self.size_bytes += entry.nbytes
        while self.size_bytes > self.max_bytes:
            _, evicted = self.entries.popitem(last=False)
            self.size_bytes -= evicted.nbytes
            self.evictions += 1

    def stats(self) -> dict[str, float]:
        """Counters since the cache was created, under the `trunk_cache/` namespace."""
        lookups = self.hits + self.misses
        return {
            "trunk_cache/hit_rate": self.hits / lookups if lookups else 0.0,
            "trunk_cache/stem_hits": float(self.stem_hits),
            "trunk_cache/entries": float(len(self.entries)),
            "trunk_cache/size_mb": self.size_bytes / 2**20,
            "trunk_cache/evictions": float(self.evictions),
        }

    # --- the frozen pass ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def frozen_states(self, policy: FlagPolicy, prompts: list[EncodedPrompt], pad_token_id: int = 0) -> FrozenStates:
        """h1 of each prompt: the prefix from the cache (computed on a miss), the suffix through the frozen layers."""
        self.bind(policy)
        entries: dict[tuple, PrefixEntry] = {}
        for prompt in prompts:
            key = (tuple(prompt.market_key), tuple(prompt.market_ids))
            if key in entries:
                self.hits += 1
                continue
            entry = self.get(key)
            if entry is None:
                entry = self._compute(policy, prompt)
                self.put(key, entry)
            entries[key] = entry
        row_entries = [entries[(tuple(p.market_key), tuple(p.market_ids))] for p in prompts]
        if self.batch_suffixes:
            suffixes = frozen_suffix(policy, row_entries, [p.account_ids for p in prompts], pad_token_id)
        else:
            suffixes = [
                frozen_suffix(policy, [entry], [prompt.account_ids], pad_token_id)[0]
                for entry, prompt in zip(row_entries, prompts)
            ]
        return FrozenStates([(entry.hidden, suffix) for entry, suffix in zip(row_entries, suffixes)])

    # Stems shorter than this are not worth a second pass (and two unrelated prefixes share a few tokens by chance).
    MIN_STEM_TOKENS = 16

    def _compute(self, policy: FlagPolicy, prompt: EncodedPrompt) -> PrefixEntry:
        """A missing prefix: its asset's stem plus its own tokens when the stem is known, else the whole prefix (and,
        with a previous prefix of the same asset, the stem for the next ones). The first two prefixes may share more
        than every date does (two dates of one month share the month): a prefix that leaves the stem early shortens
        it to their common tokens."""
        tokens = tuple(prompt.market_ids)
        asset, _date, mode, fingerprint = prompt.market_key
        stem_key = (asset, mode, fingerprint)
        stem = self.stems.get(stem_key) if self.share_stem else None
        if stem is not None:
            common = common_length(stem.token_ids, tokens)
            if common < len(stem) and common >= self.MIN_STEM_TOKENS:
                stem = self.stems[stem_key] = stem.head(common)
            if common == len(stem) and len(tokens) > common:
                self.stem_hits += 1
                return extend_prefix(policy, stem, list(tokens[common:]))
        entry = compute_prefix(policy, list(tokens))
        if self.share_stem and stem is None:
            first = self._first_prefix.setdefault(stem_key, entry)
            common = common_length(first.token_ids, tokens)
            if first is not entry and common >= self.MIN_STEM_TOKENS:
                self.stems[stem_key] = entry.head(common)
                del self._first_prefix[stem_key]
        return entry


def common_length(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """The number of leading tokens that `a` and `b` share."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def compute_prefix(policy: FlagPolicy, token_ids: list[int]) -> PrefixEntry:
    """Run a market prefix alone (positions 0..P-1) through the frozen layers, keeping each layer's keys/values."""
    from transformers import DynamicCache

    inner = policy.backbone.model
    input_ids = torch.tensor([token_ids], dtype=torch.long, device=policy.device)
    hidden = inner.embed_tokens(input_ids)
    causal_mask, position_ids, position_embeddings = policy._attention_inputs(hidden, torch.ones_like(input_ids))
    cache = DynamicCache()
    for layer in policy.frozen_layers:
        hidden = layer(
            hidden,
            attention_mask=causal_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            position_embeddings=position_embeddings,
        )
    keys = [cache.layers[i].keys for i in range(policy.num_frozen_layers)]
    values = [cache.layers[i].values for i in range(policy.num_frozen_layers)]
    return PrefixEntry(tuple(token_ids), keys, values, hidden[0])


def _stack_padded(tensors: list[torch.Tensor], length: int) -> torch.Tensor:
    """Stack `(1, heads, l_i, dim)` tensors into `(batch, heads, length, dim)`, zero-padded on the right."""
    if len(tensors) == 1 and tensors[0].shape[2] == length:
        return tensors[0]
    first = tensors[0]
    out = first.new_zeros((len(tensors), first.shape[1], length, first.shape[3]))
    for row, tensor in enumerate(tensors):
        out[row, :, : tensor.shape[2]] = tensor[0]
    return out


def frozen_suffix(
    policy: FlagPolicy, entries: list[PrefixEntry], suffixes: list[list[int]], pad_token_id: int = 0
) -> list[torch.Tensor]:
    """The account suffixes through the frozen layers, attending to their cached prefixes, in one batched pass.

    Row i holds its prefix's keys/values at key slots [0, P_i) (right-padded to the longest prefix) and its suffix at
    slots [P_max, P_max + S_i); its suffix tokens sit at positions P_i, P_i + 1, ... (RoPE), as in the full prompt.

    Returns:
        `list[torch.Tensor]`: h1 of each suffix, `(S_i, hidden_size)`.
    """
    hidden, _ = _suffix_pass(policy, entries, suffixes, pad_token_id)
    return [hidden[row, : len(suffix)] for row, suffix in enumerate(suffixes)]


def extend_prefix(policy: FlagPolicy, stem: PrefixEntry, tokens: list[int]) -> PrefixEntry:
    """The prefix `stem + tokens`: `tokens` through the frozen layers attending to the stem's keys/values (the suffix
    pass on one row), their keys/values appended to the stem's."""
    hidden, cache = _suffix_pass(policy, [stem], [tokens])
    keys = [cache.layers[i].keys for i in range(policy.num_frozen_layers)]
    values = [cache.layers[i].values for i in range(policy.num_frozen_layers)]
    return PrefixEntry(stem.token_ids + tuple(tokens), keys, values, torch.cat([stem.hidden, hidden[0]]))


def _suffix_pass(policy: FlagPolicy, entries: list[PrefixEntry], suffixes: list[list[int]], pad_token_id: int = 0):
    """`frozen_suffix`'s pass: the padded suffix hidden states `(batch, S_max, hidden_size)` and the cache holding the
    prefixes' and the suffixes' keys/values."""
    from transformers import DynamicCache

    inner, device = policy.backbone.model, policy.device
    batch = len(suffixes)
    prefix_lengths = torch.tensor([len(e) for e in entries], device=device)
    suffix_lengths = torch.tensor([len(s) for s in suffixes], device=device)
    prefix_width, suffix_width = int(prefix_lengths.max()), int(suffix_lengths.max())
    input_ids = torch.full((batch, suffix_width), pad_token_id, dtype=torch.long)
    for row, suffix in enumerate(suffixes):
        input_ids[row, : len(suffix)] = torch.tensor(suffix, dtype=torch.long)
    hidden = inner.embed_tokens(input_ids.to(device))
    offsets = torch.arange(suffix_width, device=device)
    position_ids = prefix_lengths[:, None] + offsets[None, :]

    # Key j < P_max is prefix slot j (valid below P_i); key P_max + s' is suffix token s' (causal, valid below S_i).
    # Padding queries attend to every valid key, so that no row of the softmax is empty (a NaN would reach the keys).
    prefix_visible = (torch.arange(prefix_width, device=device)[None, :] < prefix_lengths[:, None])[:, None, :]
    key_valid = offsets[None, :] < suffix_lengths[:, None]
    query_pad = ~key_valid
    causal = offsets[None, :, None] >= offsets[None, None, :]
    suffix_visible = (causal | query_pad[:, :, None]) & key_valid[:, None, :]
    visible = torch.cat([prefix_visible.expand(batch, suffix_width, prefix_width), suffix_visible], dim=-1)[:, None]
    if policy.backbone.config._attn_implementation == "eager":
        attention_mask = torch.zeros(visible.shape, dtype=hidden.dtype, device=device)
        attention_mask.masked_fill_(~visible, torch.finfo(hidden.dtype).min)
    else:
        attention_mask = visible

    cache = DynamicCache(
        ddp_cache_data=[
            (
                _stack_padded([e.keys[i] for e in entries], prefix_width),
                _stack_padded([e.values[i] for e in entries], prefix_width),
            )
            for i in range(policy.num_frozen_layers)
        ]
    )
    position_embeddings = inner.rotary_emb(hidden, position_ids=position_ids)
    for layer in policy.frozen_layers:
        hidden = layer(
            hidden,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            position_embeddings=position_embeddings,
        )
    return hidden, cache
