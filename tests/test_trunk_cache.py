"""The fast paths give the plain computation's numbers: the frozen-trunk cache (prefix keys/values + suffix pass), the
last-token top layer, the update on the rollout's hidden states; the cache's memory bound and invalidation; and
training with every speed-up on or off from the same seed follows the same losses."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import build_tiny_llama, tiny_ppo_config

from flagtrl.data.synthetic import make_synthetic_dataset
from flagtrl.models import FlagPolicy
from flagtrl.models.trunk_cache import FrozenStates, PrefixEntry, TrunkCache
from flagtrl.prompt import EncodedPrompt
from flagtrl.trainer.ppo_flag_trainer import FlagPPOTrainer
from flagtrl.trainer.ppo_math import categorical_kl


ATOL = 1e-4  # float32


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny model's ops are microseconds: with two OpenMP threads on a busy 2-core machine each op can wait a whole
    time slice for a descheduled thread (a tiny training measured 47 s with 2 threads, 2.6 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_policy(tokenizer, seed: int = 0) -> FlagPolicy:
    return FlagPolicy.from_backbone(build_tiny_llama(len(tokenizer), seed=seed), tokenizer, num_trainable_layers=2)


def random_tokens(generator: torch.Generator, vocab_size: int, length: int) -> list[int]:
    return torch.randint(5, vocab_size, (length,), generator=generator).tolist()


def make_prompts(vocab_size: int, rows: list[tuple[str, int]], seed: int = 0) -> list[EncodedPrompt]:
    """Prompts on market prefixes 'a' (31 tokens), 'b' (17) and 'c' (44), with account suffixes of the given lengths."""
    generator = torch.Generator().manual_seed(seed)
    prefixes = {key: random_tokens(generator, vocab_size, n) for key, n in (("a", 31), ("b", 17), ("c", 44))}
    return [
        EncodedPrompt(prefixes[key], random_tokens(generator, vocab_size, n), ("X", key, "paper", "v1"))
        for key, n in rows
    ]


def action_masks(batch: int) -> torch.Tensor:
    masks = torch.ones(batch, 3, dtype=torch.bool)
    masks[::2, 0] = False  # sell invalid on every other row (no shares)
    return masks


def plain_outputs(policy: FlagPolicy, prompts, masks):
    """The reference computation: full forward of the right-padded batch, full top layers."""
    batch = policy.collate(prompts)
    policy.last_token_top_layer = False
    try:
        return policy(batch["input_ids"], batch["attention_mask"], masks, with_reference=True)
    finally:
        policy.last_token_top_layer = True


def fast_outputs(policy: FlagPolicy, prompts, masks, cache: TrunkCache):
    hidden, attention_mask = policy.frozen_states(prompts, cache).padded()
    return policy(None, attention_mask, masks, with_reference=True, frozen_hidden=hidden)


def assert_same_outputs(plain, fast) -> None:
    torch.testing.assert_close(fast.log_probs, plain.log_probs, atol=ATOL, rtol=0)
    torch.testing.assert_close(fast.values, plain.values, atol=ATOL, rtol=0)
    torch.testing.assert_close(fast.ref_log_probs, plain.ref_log_probs, atol=ATOL, rtol=0)
    kl_plain, kl_fast = (
        categorical_kl(plain.log_probs, plain.ref_log_probs),
        categorical_kl(fast.log_probs, fast.ref_log_probs),
    )
    torch.testing.assert_close(kl_fast, kl_plain, atol=ATOL, rtol=0)


BATCHES = {
    "one": [("a", 9)],
    "shared_prefix": [("a", 12), ("a", 3)],
    "mixed": [("a", 12), ("b", 20), ("a", 5), ("c", 9), ("b", 1)],
}


@pytest.mark.parametrize("batch_suffixes", [True, False], ids=["batched", "per_row"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("rows", list(BATCHES.values()), ids=list(BATCHES))
def test_cached_and_plain_paths_agree(tiny_tokenizer, rows, attention, batch_suffixes):
    policy = make_policy(tiny_tokenizer)
    policy.backbone.config._attn_implementation = attention
    prompts, masks = make_prompts(len(tiny_tokenizer), rows), action_masks(len(rows))
    cache = TrunkCache(max_mb=16, batch_suffixes=batch_suffixes)
    with torch.no_grad():
        assert_same_outputs(plain_outputs(policy, prompts, masks), fast_outputs(policy, prompts, masks, cache))
        # h1 itself, position by position (padding excluded).
        batch = policy.collate(prompts)
        plain_hidden = policy.frozen_forward(batch["input_ids"], batch["attention_mask"])
        fast_hidden, fast_mask = policy.frozen_states(prompts, cache).padded()
        assert torch.equal(fast_mask, batch["attention_mask"])
        torch.testing.assert_close(fast_hidden, plain_hidden * fast_mask[..., None], atol=ATOL, rtol=0)
    assert len(cache) == len({key for key, _ in rows})


def test_paths_agree_after_the_weights_change_and_on_cache_hits(tiny_tokenizer):
    policy = make_policy(tiny_tokenizer)
    cache = TrunkCache(max_mb=16)
    optimizer = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=0.5)
    for step, rows in enumerate([BATCHES["mixed"], [("c", 4), ("a", 30), ("b", 7)], BATCHES["one"]]):
        prompts, masks = make_prompts(len(tiny_tokenizer), rows, seed=step), action_masks(len(rows))
        with torch.no_grad():
            assert_same_outputs(plain_outputs(policy, prompts, masks), fast_outputs(policy, prompts, masks, cache))
        # A gradient step on the fast path changes the trainable layers and heads (not the frozen trunk).
        out = fast_outputs(policy, prompts, masks, cache)
        (out.values.pow(2).sum() - out.log_probs.exp()[:, 1].sum()).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert cache.hits > 0 and cache.invalidations == 0
    reference_head = policy.reference["policy_head"].weight
    assert not torch.equal(policy.policy_head.weight, reference_head)  # the weights did change


def test_last_token_layer_matches_the_full_layer_with_gradients(tiny_tokenizer):
    policy = make_policy(tiny_tokenizer)
    prompts, masks = make_prompts(len(tiny_tokenizer), BATCHES["mixed"]), action_masks(5)
    batch = policy.collate(prompts)
    grads = []
    for last_token in (False, True):
        policy.last_token_top_layer = last_token
        policy.zero_grad()
        out = policy(batch["input_ids"], batch["attention_mask"], masks)
        (out.values.sum() + out.log_probs.exp()[:, 2].sum()).backward()
        grads.append({n: p.grad.clone() for n, p in policy.named_parameters() if p.requires_grad})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4, msg=name)


def test_frozen_states_select_concat_and_bytes(tiny_tokenizer):
    policy = make_policy(tiny_tokenizer)
    prompts = make_prompts(len(tiny_tokenizer), BATCHES["mixed"])
    states = FrozenStates.concat([policy.frozen_states(prompts[:2], TrunkCache()), policy.frozen_states(prompts[2:])])
    assert states.lengths == [len(p) for p in prompts]
    picked = states.select(torch.tensor([3, 0]))
    assert picked.lengths == [len(prompts[3]), len(prompts[0])]
    hidden, mask = picked.padded()
    assert hidden.shape[:2] == mask.shape == (2, max(picked.lengths))
    # Rows on one prefix share its cached hidden states rather than copying them.
    shared = policy.frozen_states([prompts[0], prompts[2]], TrunkCache())
    assert shared.rows[0][0] is shared.rows[1][0]


# --- memory bound and invalidation ----------------------------------------------------------------------------------
def fake_entry(length: int, nbytes: int) -> PrefixEntry:
    return PrefixEntry(tuple(range(length)), [], [], torch.zeros(nbytes // 4))


def test_lru_eviction_respects_the_memory_bound():
    cache = TrunkCache(max_mb=1)  # 1 MiB: room for three 300 KiB entries
    for key in "abc":
        cache.put((key,), fake_entry(3, 300 * 1024))
    assert cache.get(("a",)) is not None  # 'a' becomes the most recently used
    cache.put(("d",), fake_entry(3, 300 * 1024))
    assert cache.size_bytes <= cache.max_bytes
    assert set(cache.entries) == {("a",), ("c",), ("d",)} and cache.evictions == 1
    cache.put(("huge",), fake_entry(3, 2 * 1024 * 1024))  # larger than the bound: not stored
    assert ("huge",) not in cache.entries and cache.size_bytes <= cache.max_bytes
    stats = cache.stats()
    assert stats["trunk_cache/entries"] == 3 and 0 < stats["trunk_cache/size_mb"] <= 1


def test_real_entries_stay_within_the_bound(tiny_tokenizer):
    policy = make_policy(tiny_tokenizer)
    one_entry = policy.frozen_states(make_prompts(len(tiny_tokenizer), [("c", 3)]), cache := TrunkCache())
    entry_bytes = cache.size_bytes
    assert one_entry and entry_bytes > 0
    bounded = TrunkCache(max_mb=2.5 * entry_bytes / 2**20)
    for seed in range(5):  # five distinct prefixes of the same length
        prompts = make_prompts(len(tiny_tokenizer), [("c", 3)], seed=100 + seed)
        policy.frozen_states(prompts, bounded)
    assert len(bounded) == 2 and bounded.size_bytes <= bounded.max_bytes and bounded.evictions == 3


def test_a_different_prompt_or_tokens_is_a_miss(tiny_tokenizer):
    policy = make_policy(tiny_tokenizer)
    cache = TrunkCache()
    prompt = make_prompts(len(tiny_tokenizer), [("a", 5)])[0]
    policy.frozen_states([prompt], cache)
    assert (cache.hits, cache.misses) == (0, 1)
    policy.frozen_states([prompt], cache)
    assert (cache.hits, cache.misses) == (1, 1)
    other_version = EncodedPrompt(prompt.market_ids, prompt.account_ids, (*prompt.market_key[:3], "v2"))
    other_tokens = EncodedPrompt(prompt.market_ids[:-1] + [7], prompt.account_ids, prompt.market_key)
    for changed in (other_version, other_tokens):
        misses = cache.misses
        policy.frozen_states([changed], cache)
        assert cache.misses == misses + 1


def test_a_changed_frozen_trunk_empties_the_cache(tiny_tokenizer):
    policy = make_policy(tiny_tokenizer)
    prompts, masks = make_prompts(len(tiny_tokenizer), BATCHES["mixed"]), action_masks(5)
    cache = TrunkCache()
    policy.frozen_states(prompts, cache)
    assert len(cache) == 3
    with torch.no_grad():
        policy.frozen_layers[0].mlp.up_proj.weight.mul_(1.5)  # an in-place edit of a frozen weight
        assert_same_outputs(plain_outputs(policy, prompts, masks), fast_outputs(policy, prompts, masks, cache))
    assert cache.invalidations == 1
    other = make_policy(tiny_tokenizer, seed=1)  # another backbone
    other.frozen_states(prompts, cache)
    assert cache.invalidations == 2 and len(cache) == 3
    other.double()  # another dtype
    with torch.no_grad():
        assert_same_outputs(plain_outputs(other, prompts, masks), fast_outputs(other, prompts, masks.double(), cache))
    assert cache.invalidations == 3


# --- training -------------------------------------------------------------------------------------------------------
SPEEDUPS_OFF = dict(use_trunk_cache=False, reuse_rollout_hidden_states=False, last_token_top_layer=False)


def train_tiny(tokenizer, output_dir: Path, **overrides) -> FlagPPOTrainer:
    settings = dict(num_envs=3, total_timesteps=3 * 3 * 4, max_episode_steps=5, minibatch_size=6)
    settings.update(overrides)
    trainer = FlagPPOTrainer(
        make_policy(tokenizer),
        tiny_ppo_config(output_dir, **settings),
        make_synthetic_dataset(seed=0),
        processing_class=tokenizer,
    )
    trainer.train()
    return trainer


@pytest.mark.parametrize("speedups", [dict(), dict(use_trunk_cache=False), dict(reuse_rollout_hidden_states=False)])
def test_training_with_and_without_speedups_follows_the_same_losses(tiny_tokenizer, tmp_path, speedups):
    plain = train_tiny(tiny_tokenizer, tmp_path / "plain", **SPEEDUPS_OFF)
    fast = train_tiny(tiny_tokenizer, tmp_path / "fast", **speedups)
    assert plain.trunk_cache is None
    if speedups.get("use_trunk_cache", True):
        assert fast.trunk_cache.hits > 0 and fast.trunk_cache.misses > 0
    plain_logs = [e for e in plain.state.log_history if "policy/entropy" in e]
    fast_logs = [e for e in fast.state.log_history if "policy/entropy" in e]
    assert len(plain_logs) == len(fast_logs) == 3
    keys = ("objective/loss", "policy/loss", "value/loss", "objective/kl", "policy/entropy", "policy/approx_kl")
    for plain_entry, fast_entry in zip(plain_logs, fast_logs):
        for key in keys:
            assert math.isclose(fast_entry[key], plain_entry[key], rel_tol=1e-3, abs_tol=1e-5), key
        assert fast_entry["objective/reward_mean"] == plain_entry["objective/reward_mean"]  # same actions taken
    for key, tensor in plain.model.adapter_state_dict().items():
        torch.testing.assert_close(fast.model.adapter_state_dict()[key], tensor, atol=1e-5, rtol=1e-4, msg=key)


# --- slow: the real SmolLM2-135M --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_cached_and_plain_paths_agree_on_real_prompts():
    from flagtrl.backtest import split_windows
    from flagtrl.data.schema import list_assets, market_series
    from flagtrl.envs.trading_env import TradingEnv
    from flagtrl.models.loading import SMOLLM2_ID, load_backbone, load_tokenizer
    from flagtrl.prompt import PromptBuilder, PromptConfig

    tokenizer = load_tokenizer(SMOLLM2_ID)
    policy = FlagPolicy.from_backbone(load_backbone(SMOLLM2_ID), tokenizer, num_trainable_layers=2)
    dataset = make_synthetic_dataset(seed=0)
    builder = PromptBuilder(tokenizer, PromptConfig(max_prompt_tokens=512))
    prompts, masks = [], []
    for asset in list_assets(dataset["train"])[:2]:
        env = TradingEnv(market_series(dataset, asset), window=split_windows(dataset, "train", [asset])[asset])
        env.reset(seed=0)
        for action in (2, 1):  # buy, then hold: two account states on consecutive days
            state = env.state()
            prompts.append(builder.encode(state))
            masks.append(torch.as_tensor(state.action_mask))
            env.step(action)
    masks = torch.stack(masks).bool()
    assert all(len(p.market_ids) > 50 and len(p.account_ids) > 50 for p in prompts)
    cache = TrunkCache()
    with torch.no_grad():
        plain = plain_outputs(policy, prompts, masks)
        for _ in ("miss", "hit"):
            assert_same_outputs(plain, fast_outputs(policy, prompts, masks, cache))
    assert cache.hits == len(prompts) and cache.misses == len(prompts)
