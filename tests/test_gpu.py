"""On a CUDA GPU (marked `gpu`, never in the default suite; `benchmarks/gpu_check.sh` runs them): each path against
float32 arithmetic on the same weights in every dtype the project runs there, and a tiny PPO run with batched
environments."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import build_tiny_llama, tiny_ppo_config
from test_trunk_cache import (
    ATOL,
    BF16_FACTOR,
    BF16_FLOOR,
    BF16_ROWS,
    action_masks,
    fast_outputs,
    make_prompts,
    plain_outputs,
    rms_error,
)

from flagtrl.data.synthetic import make_synthetic_dataset
from flagtrl.models import FlagPolicy
from flagtrl.models.trunk_cache import TrunkCache
from flagtrl.trainer.ppo_flag_trainer import FlagPPOTrainer


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def cuda_policies(tokenizer, dtype: torch.dtype, seed: int = 0) -> tuple[FlagPolicy, FlagPolicy]:
    """A tiny policy on the GPU with its frozen trunk in `dtype` (top layers float32, as always), and its float32
    twin on the same (dtype-rounded) weights; weights 5x wider than the default init, as in test_trunk_cache."""
    from transformers import LlamaForCausalLM

    config = build_tiny_llama(len(tokenizer)).config
    config.initializer_range = 0.1
    torch.manual_seed(seed)
    backbone = LlamaForCausalLM(config).to(dtype)
    policy = FlagPolicy.from_backbone(backbone, tokenizer, num_trainable_layers=2).to("cuda")
    return policy, copy.deepcopy(policy).float()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("batch_suffixes", [True, False])
def test_cuda_paths_against_float32(tiny_tokenizer, dtype, batch_suffixes):
    policy, reference = cuda_policies(tiny_tokenizer, dtype)
    prompts = make_prompts(len(tiny_tokenizer), BF16_ROWS)
    masks = action_masks(len(BF16_ROWS)).cuda()
    # float32 against float32: only the kernels' own rounding (SDPA may pick another kernel per shape), as on the CPU
    floor = ATOL if dtype == torch.float32 else BF16_FLOOR
    with torch.no_grad():
        fp32 = plain_outputs(reference, prompts, masks)
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            e_plain = rms_error(plain_outputs(policy, prompts, masks), fp32, masks)
            cache = TrunkCache(batch_suffixes=batch_suffixes)
            for _ in ("miss", "hit"):
                e_fast = rms_error(fast_outputs(policy, prompts, masks, cache), fp32, masks)
                for plain, fast in zip(e_plain, e_fast):
                    assert fast <= BF16_FACTOR * plain + floor, (dtype, e_fast, e_plain)
    if dtype != torch.float32:
        assert e_plain[0] > 10 * BF16_FLOOR  # the comparison did run in reduced precision


def test_cuda_ppo_with_batched_environments(tiny_tokenizer, tmp_path):
    """One PPO run on the GPU, 8 environments over 2 assets stepped together: trainable weights move, frozen ones
    do not, and the trunk cache is hit."""
    policy = FlagPolicy.from_backbone(
        build_tiny_llama(len(tiny_tokenizer)), tiny_tokenizer, num_trainable_layers=2
    ).to("cuda")
    dataset = make_synthetic_dataset(seed=0)
    args = tiny_ppo_config(tmp_path, use_cpu=False, bf16=True, num_envs=8, num_steps=2, total_timesteps=32)
    frozen_before = policy.frozen_layers[0].mlp.up_proj.weight.detach().clone()
    top_before = policy.trainable_layers[-1].mlp.up_proj.weight.detach().clone()
    trainer = FlagPPOTrainer(policy, args, dataset, processing_class=tiny_tokenizer)
    assert len({env.series.asset for env in trainer.envs}) > 1
    trainer.train()
    assert torch.equal(policy.frozen_layers[0].mlp.up_proj.weight, frozen_before)
    assert not torch.equal(policy.trainable_layers[-1].mlp.up_proj.weight, top_before)
    assert trainer.trunk_cache.hits > 0
    logs = [entry for entry in trainer.state.log_history if "policy/entropy" in entry]
    assert logs and all(torch.isfinite(torch.tensor(entry["objective/loss"])) for entry in logs)
