"""FLAG-Trader's policy network (paper §4.2): a partially fine-tuned causal LM with a policy head and a value head.

    h1 = layers 1..N of the LLM           (frozen, computed without gradients)
    h2 = layers N+1..N+M and final norm   (trainable, shared by both heads)
    pi(a|s) = masked_softmax(policy_head(h2[last token]))     V(s) = value_head(h2[last token])

The policy head can start from the LM head's rows for the action tokens, so the initial policy is the LLM's own
zero-shot preference among sell/hold/buy and "KL to the reference" means staying near the pre-trained model. The
reference policy is a frozen copy of the initial top layers and head: it reuses the frozen trunk's hidden states, so
the KL costs only the top layers, never a second full forward.

LoRA (`peft_config`, `flagtrl.models.lora`): the top layers keep their base weights frozen and train LoRA adapters
instead; the heads still train in full. The reference policy is then the same top layers with the adapters disabled
(peft's `disable_adapter`) and a copy of the initial policy head, so it holds no copy of any layer.

Fast paths (exact up to float rounding; `tests/test_trunk_cache.py`): `frozen_states` computes h1 through a
`TrunkCache` (the frozen layers run once per market prefix, then only on each prompt's account suffix), `forward`
accepts a precomputed h1 (`frozen_hidden`, what the PPO update reuses from the rollout), and the last trainable layer
computes its attention and MLP for the last token only (`last_token_top_layer`): the heads read nothing else.

The trained artefact is an adapter: the trainable layers, the final norm and both heads (plus the reference head) as
safetensors, with an `adapter_config.json` naming the base model and flagtrl's settings; for a LoRA policy, a peft
adapter with the heads beside it (`flagtrl.models.adapter_io`; the Hub side in `flagtrl.models.hub`).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..actions import ACTIONS
from ..prompt import PROMPT_VERSION, EncodedPrompt
from .action_head import masked_log_softmax
from .adapter_io import LORA_KEY_PREFIX, read_adapter, save_adapter
from .hub import push_adapter_to_hub, resolve_adapter_folder
from .loading import load_backbone
from .lora import attach_lora
from .trunk_cache import FrozenStates, TrunkCache, supports_trunk_cache


logger = logging.getLogger(__name__)

HEAD_INITS = ("lm_head", "random")
# Decoder layers whose computation `last_token_layer` reproduces (pre-norm attention + MLP, no q/k norms).
LAST_TOKEN_LAYERS = ("LlamaDecoderLayer", "MistralDecoderLayer", "Qwen2DecoderLayer")


@dataclass
class FlagPolicyConfig:
    """Settings of a `FlagPolicy`, saved in the adapter's `adapter_config.json` under `flagtrl`.

    Args:
        base_model_name_or_path (`str`): The backbone (Hub id or folder) the adapter sits on.
        num_trainable_layers (`int`, *optional*, defaults to `2`): M, the trainable top layers.
        action_tokens (`list[str]`, *optional*, defaults to `["sell", "hold", "buy"]`): One token per action.
        action_token_ids (`list[int]`, *optional*): Their ids in the tokenizer (filled in by `from_backbone`).
        policy_head_init (`str`, *optional*, defaults to `"lm_head"`): `lm_head` (LM head rows of the action tokens)
            or `random` (a fresh linear layer).
        prompt_version (`str`, *optional*): The prompt the policy was trained with.
        prompt_config (`dict`, *optional*): The `PromptConfig` it was trained with.
        base_model_revision (`str`, *optional*): Hub revision of the backbone.
        peft_type (`str`, *optional*): `"LORA"` when the trainable layers carry LoRA adapters (their settings are
            peft's `LoraConfig`, saved in peft's `adapter_config.json`); `None` when they are trained in full.
    """

    base_model_name_or_path: str
    num_trainable_layers: int = 2
    action_tokens: list[str] = field(default_factory=lambda: list(ACTIONS))
    action_token_ids: list[int] = field(default_factory=list)
    policy_head_init: str = "lm_head"
    prompt_version: str = PROMPT_VERSION
    prompt_config: dict = field(default_factory=dict)
    base_model_revision: str | None = None
    peft_type: str | None = None


@dataclass
class FlagPolicyOutput:
    """`logits`, `log_probs` (masked), `values` and, when asked, `ref_log_probs` of the reference policy."""

    logits: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    ref_log_probs: torch.Tensor | None = None


def action_token_ids(tokenizer, action_tokens: list[str]) -> list[int]:
    """The single token id of each action word, or a clear error naming the word and its tokenisation."""
    ids = []
    for word in action_tokens:
        tokens = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(tokens) != 1:
            raise ValueError(
                f"The action {word!r} is {len(tokens)} tokens {tokens} in this tokenizer; the policy head initialised "
                "from the LM head needs one token per action. Use policy_head_init='random' or other action_tokens."
            )
        ids.append(tokens[0])
    return ids


class FlagPolicy(nn.Module):
    """Actor-critic over a causal LM: frozen lower layers, trainable top layers, policy and value heads.

    Build it with `FlagPolicy.from_backbone(model, tokenizer, num_trainable_layers=...)` (with `peft_config=LoraConfig(...)`
    for LoRA on the trainable layers) or load a trained adapter with `FlagPolicy.from_pretrained(folder_or_repo_id)`.

    Attributes:
        last_token_top_layer (`bool`, defaults to `True`): Run the last trainable layer's attention query and MLP for
            the last token only (its keys and values still cover the whole prompt); the full layer when `False`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        config: FlagPolicyConfig,
        with_reference: bool = True,
        last_token_top_layer: bool = True,
        peft_config=None,
    ):
        super().__init__()
        inner = backbone.model
        num_layers = len(inner.layers)
        if not 1 <= config.num_trainable_layers <= num_layers:
            raise ValueError(f"num_trainable_layers must be in [1, {num_layers}], got {config.num_trainable_layers}.")
        self.config_flag = config
        self.backbone = backbone
        self.num_frozen_layers = num_layers - config.num_trainable_layers
        self.last_token_top_layer = last_token_top_layer
        hidden = backbone.config.hidden_size
        if (peft_config is not None) != (config.peft_type is not None):
            raise ValueError(
                f"The policy config says peft_type={config.peft_type!r} but peft_config is "
                f"{type(peft_config).__name__}: pass both (LoRA) or neither (top layers trained in full)."
            )

        # Heads and trainable layers keep float32 master weights; the frozen trunk stays in the load dtype.
        self.policy_head = nn.Linear(hidden, len(config.action_tokens), bias=False)
        self.value_head = nn.Linear(hidden, 1)
        if config.policy_head_init == "lm_head":
            if not config.action_token_ids:
                raise ValueError("policy_head_init='lm_head' needs action_token_ids.")
            rows = backbone.get_output_embeddings().weight[config.action_token_ids]
            self.policy_head.weight.data.copy_(rows.detach().float())
        elif config.policy_head_init == "random":
            nn.init.normal_(self.policy_head.weight, std=0.02)
        else:
            raise ValueError(f"Unknown policy_head_init {config.policy_head_init!r}; choose one of {HEAD_INITS}.")
        # A value head that starts at 0 keeps the first advantages equal to the returns (CleanRL's std=1 is for MLPs).
        nn.init.normal_(self.value_head.weight, std=0.01)
        nn.init.zeros_(self.value_head.bias)

        for parameter in backbone.parameters():
            parameter.requires_grad_(False)
        # Not a registered submodule: it wraps `backbone`, whose parameters the policy already holds.
        self.__dict__["_peft_model"] = None
        if peft_config is not None:
            # LoRA: the base weights of the top layers stay frozen in their load dtype (or quantised); peft keeps the
            # LoRA weights in float32 (`autocast_adapter_dtype`).
            self.__dict__["_peft_model"] = attach_lora(backbone, peft_config, self.num_frozen_layers)
            modules = [self.policy_head, self.value_head]
        else:
            modules = self.top_modules()
        for module in modules:
            module.float()
            for parameter in module.parameters():
                parameter.requires_grad_(True)
        # The reference policy of the KL penalty: a frozen copy of the initial top layers, norm and policy head; with
        # LoRA, the initial policy head alone (the layers are the base layers, adapters disabled).
        self.reference = None
        if with_reference and peft_config is not None:
            self.reference = nn.ModuleDict({"policy_head": copy.deepcopy(self.policy_head)}).requires_grad_(False)
        elif with_reference:
            self.reference = nn.ModuleDict(
                {
                    "layers": copy.deepcopy(self.trainable_layers),
                    "norm": copy.deepcopy(inner.norm),
                    "policy_head": copy.deepcopy(self.policy_head),
                }
            ).requires_grad_(False)

    # --- structure ---------------------------------------------------------------------------------------------
    @property
    def config(self):
        """The backbone's `PretrainedConfig` (what transformers' Trainer and TRL's model card read)."""
        return self.backbone.config

    @property
    def frozen_layers(self) -> nn.ModuleList:
        return self.backbone.model.layers[: self.num_frozen_layers]

    @property
    def trainable_layers(self) -> nn.ModuleList:
        return self.backbone.model.layers[self.num_frozen_layers :]

    @property
    def peft_model(self):
        """The `peft.PeftModelForCausalLM` around the backbone of a LoRA policy; `None` for full top layers."""
        return self.__dict__["_peft_model"]

    @property
    def peft_config(self):
        """The `peft.LoraConfig` of a LoRA policy (as completed by `attach_lora`); `None` for full top layers."""
        return None if self.peft_model is None else self.peft_model.peft_config["default"]

    def top_modules(self) -> list[nn.Module]:
        """The top of the network: trainable layers, final norm, policy head, value head (with LoRA, only the heads
        and the layers' LoRA weights train)."""
        return [*self.trainable_layers, self.backbone.model.norm, self.policy_head, self.value_head]

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.policy_head.parameters(), *self.value_head.parameters()]

    def llm_parameters(self) -> list[nn.Parameter]:
        """The trained LLM weights: the top layers and the final norm, or their LoRA weights alone."""
        modules = [*self.trainable_layers, self.backbone.model.norm]
        return [p for module in modules for p in module.parameters() if p.requires_grad]

    @property
    def top_dtype(self) -> torch.dtype:
        """The heads' dtype (float32), in which the policy's outputs are computed."""
        return self.policy_head.weight.dtype

    @property
    def layer_dtype(self) -> torch.dtype:
        """The dtype the top layers compute in: float32 when trained in full; their load dtype with LoRA."""
        return self.backbone.model.norm.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.policy_head.weight.device

    # --- forward -------------------------------------------------------------------------------------------------
    def collate(
        self, prompts: list[EncodedPrompt] | list[list[int]], pad_token_id: int = 0
    ) -> dict[str, torch.Tensor]:
        """Right-pad token lists into `input_ids` and `attention_mask` on the policy's device."""
        sequences = [p.input_ids if isinstance(p, EncodedPrompt) else list(p) for p in prompts]
        width = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            input_ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
            attention_mask[row, : len(sequence)] = 1
        return {"input_ids": input_ids.to(self.device), "attention_mask": attention_mask.to(self.device)}

    def _attention_inputs(self, hidden: torch.Tensor, attention_mask: torch.Tensor):
        from transformers.masking_utils import create_causal_mask

        inner = self.backbone.model
        position_ids = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        causal_mask = create_causal_mask(
            config=self.backbone.config,
            inputs_embeds=hidden,
            attention_mask=attention_mask,
            past_key_values=None,
            position_ids=position_ids,
        )
        position_embeddings = inner.rotary_emb(hidden, position_ids=position_ids)
        return causal_mask, position_ids, position_embeddings

    @torch.no_grad()
    def frozen_forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """h1: the hidden states after the frozen layers (no gradients, the load dtype)."""
        hidden = self.backbone.model.embed_tokens(input_ids)
        causal_mask, position_ids, position_embeddings = self._attention_inputs(hidden, attention_mask)
        for layer in self.frozen_layers:
            hidden = layer(
                hidden, attention_mask=causal_mask, position_ids=position_ids, position_embeddings=position_embeddings
            )
        return hidden

    @torch.no_grad()
    def frozen_states(
        self,
        prompts: list[EncodedPrompt] | list[list[int]],
        trunk_cache: TrunkCache | None = None,
        pad_token_id: int = 0,
    ) -> FrozenStates:
        """h1 of each prompt, row by row: through `trunk_cache` when given (and the prompts are `EncodedPrompt`s and
        the backbone supports it), else from one full forward of the right-padded batch."""
        if (
            trunk_cache is not None
            and all(isinstance(p, EncodedPrompt) and p.market_ids for p in prompts)
            and supports_trunk_cache(self)
        ):
            return trunk_cache.frozen_states(self, prompts, pad_token_id)
        batch = self.collate(prompts, pad_token_id)
        hidden = self.frozen_forward(batch["input_ids"], batch["attention_mask"])
        return FrozenStates(
            [(hidden[row, :length],) for row, length in enumerate(batch["attention_mask"].sum(1).tolist())]
        )

    def _top_forward(self, layers, norm, hidden, attention_mask) -> torch.Tensor:
        """The last real token's hidden state after `layers` and `norm`, `(batch, hidden_size)` in `top_dtype`."""
        hidden = hidden.to(self.layer_dtype)
        causal_mask, position_ids, position_embeddings = self._attention_inputs(hidden, attention_mask)
        last = attention_mask.sum(dim=1) - 1  # right padding: the last real token of each row
        last_token = self.last_token_top_layer and type(layers[-1]).__name__ in LAST_TOKEN_LAYERS
        last_token = last_token and not (self.training and layers[-1].self_attn.attention_dropout > 0)
        for layer in layers[:-1] if last_token else layers:
            hidden = layer(
                hidden, attention_mask=causal_mask, position_ids=position_ids, position_embeddings=position_embeddings
            )
        if last_token:
            return norm(last_token_layer(layers[-1], hidden, last, position_embeddings)).to(self.top_dtype)
        return norm(hidden[torch.arange(hidden.shape[0], device=hidden.device), last]).to(self.top_dtype)

    def heads(
        self,
        frozen_hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        action_mask: torch.Tensor | None = None,
        with_reference: bool = False,
    ) -> FlagPolicyOutput:
        """Trainable top layers and heads on h1 (and the reference policy's log-probs on the same h1)."""
        if action_mask is None:
            action_mask = torch.ones(frozen_hidden.shape[0], len(self.config_flag.action_tokens), device=self.device)
        last_hidden = self._top_forward(self.trainable_layers, self.backbone.model.norm, frozen_hidden, attention_mask)
        logits = self.policy_head(last_hidden).float()
        values = self.value_head(last_hidden).float().squeeze(-1)
        ref_log_probs = None
        if with_reference:
            if self.reference is None:
                raise ValueError("This FlagPolicy was built without a reference policy (with_reference=False).")
            with torch.no_grad():
                ref = self.reference
                if self.peft_model is not None:
                    with self.peft_model.disable_adapter():
                        ref_hidden = self._top_forward(
                            self.trainable_layers, self.backbone.model.norm, frozen_hidden, attention_mask
                        )
                else:
                    ref_hidden = self._top_forward(ref["layers"], ref["norm"], frozen_hidden, attention_mask)
                ref_log_probs = masked_log_softmax(ref["policy_head"](ref_hidden), action_mask)
        return FlagPolicyOutput(logits, masked_log_softmax(logits, action_mask), values, ref_log_probs)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor,
        action_mask: torch.Tensor | None = None,
        with_reference: bool = False,
        frozen_hidden: torch.Tensor | None = None,
    ) -> FlagPolicyOutput:
        """pi, V (and pi_ref) of right-padded prompts; pass `frozen_hidden` (h1, e.g. `FrozenStates.padded()`) instead
        of `input_ids` to skip the frozen layers (through the DDP wrapper, unlike a direct `heads` call)."""
        if frozen_hidden is None:
            frozen_hidden = self.frozen_forward(input_ids, attention_mask)
        return self.heads(frozen_hidden, attention_mask, action_mask, with_reference)

    @torch.no_grad()
    def action_probabilities(
        self, prompts: list[EncodedPrompt], action_masks, pad_token_id: int = 0, reference: bool = False
    ) -> torch.Tensor:
        """pi(.|s) for a batch of encoded prompts (inference helper for agents and tests); pi_ref(.|s), the untrained
        policy, with `reference=True`."""
        batch = self.collate(prompts, pad_token_id)
        mask = torch.as_tensor(np.asarray(action_masks), device=self.device)
        out = self(batch["input_ids"], batch["attention_mask"], mask, with_reference=reference)
        return (out.ref_log_probs if reference else out.log_probs).exp()

    # --- building and saving -------------------------------------------------------------------------------------
    @classmethod
    def from_backbone(
        cls,
        backbone: nn.Module,
        tokenizer,
        num_trainable_layers: int = 2,
        policy_head_init: str = "lm_head",
        action_tokens: list[str] | None = None,
        base_model_name_or_path: str | None = None,
        prompt_config: dict | None = None,
        with_reference: bool = True,
        last_token_top_layer: bool = True,
        peft_config=None,
    ) -> FlagPolicy:
        """Wrap a loaded causal LM (Llama-like: `model.embed_tokens/layers/norm/rotary_emb`).

        The policy owns its settings from here on: `prompt_config` (the `PromptConfig` fields it reads its states
        with, saved with the adapter; empty when not given) and `last_token_top_layer` (see the class docstring). A
        trainer reads them and checks them against its own config; it never writes them.

        Args:
            peft_config (`peft.LoraConfig`, *optional*): Train LoRA adapters on the `num_trainable_layers` top layers
                instead of the layers themselves (e.g. `trl.get_peft_config(model_args)`; see `flagtrl.models.lora`
                for what is supported). The backbone is modified in place.
        """
        inner = getattr(backbone, "model", None)
        if inner is None or not all(hasattr(inner, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb")):
            raise ValueError(
                f"{type(backbone).__name__} is not a Llama-like causal LM (model.embed_tokens / layers / norm / "
                "rotary_emb); FlagPolicy supports Llama, Mistral, Qwen2 and similar decoders."
            )
        action_tokens = list(action_tokens or ACTIONS)
        config = FlagPolicyConfig(
            base_model_name_or_path=base_model_name_or_path or backbone.config.name_or_path,
            num_trainable_layers=num_trainable_layers,
            action_tokens=action_tokens,
            action_token_ids=action_token_ids(tokenizer, action_tokens) if policy_head_init == "lm_head" else [],
            policy_head_init=policy_head_init,
            prompt_config=dict(prompt_config or {}),
            peft_type=None
            if peft_config is None
            else str(getattr(peft_config.peft_type, "value", peft_config.peft_type)),
        )
        return cls(
            backbone,
            config,
            with_reference=with_reference,
            last_token_top_layer=last_token_top_layer,
            peft_config=peft_config,
        )

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """The adapter's tensors, copied to the CPU: both heads and the reference head, with the trainable layers and
        the final norm (`layers.<i>.*`, `norm.*`) or, for a LoRA policy, the LoRA weights under peft's names
        (`base_model.model.model.layers.<i>.<module>.lora_{A,B}.weight`)."""
        state = {}
        if self.peft_model is not None:
            from peft import get_peft_model_state_dict

            state.update(get_peft_model_state_dict(self.peft_model))
        else:
            for offset, layer in enumerate(self.trainable_layers):
                for name, tensor in layer.state_dict().items():
                    state[f"layers.{self.num_frozen_layers + offset}.{name}"] = tensor
            state.update({f"norm.{k}": v for k, v in self.backbone.model.norm.state_dict().items()})
        state.update({f"policy_head.{k}": v for k, v in self.policy_head.state_dict().items()})
        state.update({f"value_head.{k}": v for k, v in self.value_head.state_dict().items()})
        if self.reference is not None:
            state.update(
                {f"reference.policy_head.{k}": v for k, v in self.reference["policy_head"].state_dict().items()}
            )
        # Copies, not views: a snapshot taken before training must not change with the live weights.
        return {k: v.detach().cpu().clone().contiguous() for k, v in state.items()}

    def load_adapter_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        expected = set(self.adapter_state_dict())
        missing = sorted(expected - set(state) - {k for k in expected if k.startswith("reference.")})
        # A policy loaded without its reference (inference) ignores the saved reference head.
        unexpected = sorted(k for k in set(state) - expected if not k.startswith("reference."))
        if missing or unexpected:
            raise ValueError(f"Adapter does not fit this policy: missing {missing[:5]}, unexpected {unexpected[:5]}.")
        inner = self.backbone.model
        lora = {k: v for k, v in state.items() if k.startswith(LORA_KEY_PREFIX)}
        if lora:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.peft_model, lora)
        for key, tensor in state.items():
            head, _, rest = key.partition(".")
            if key in lora:
                continue
            if head == "layers":
                index, _, name = rest.partition(".")
                target = inner.layers[int(index)]
            elif head == "norm":
                target, name = inner.norm, rest
            elif head in ("policy_head", "value_head"):
                target, name = getattr(self, head), rest
            else:  # reference.policy_head.weight
                if self.reference is None:
                    continue
                target, name = self.reference["policy_head"], rest.partition(".")[2]
            target.get_parameter(name).data.copy_(tensor)
        if self.reference is not None and not any(k.startswith("reference.") for k in state):
            # An adapter saved without its reference (by an inference-only policy). The reference is the pre-trained
            # policy: base layers (built in __init__) with the initial head. Copying the *trained* head here would mix
            # two policies; the initial head is known again only when it came from the LM head's action rows.
            if self.config_flag.policy_head_init != "lm_head":
                raise ValueError(
                    "This adapter holds no reference head and its policy head was initialised at random, so its "
                    "reference policy cannot be rebuilt: load it with with_reference=False (inference) or train anew."
                )

    def load_adapter(self, folder: str | Path) -> None:
        """Load the weights of an adapter folder of either layout (`flagtrl.models.adapter_io`) into this policy."""
        self.load_adapter_state_dict(read_adapter(folder).state)

    def save_pretrained(self, save_directory: str | Path, tokenizer=None, prompt_config: dict | None = None) -> None:
        """Write the adapter (`flagtrl.models.adapter_io.save_adapter`: flagtrl's safetensors + `adapter_config.json`
        for full top layers, peft's adapter + flagtrl's heads for LoRA; and the tokenizer when given).

        Args:
            prompt_config (`dict`, *optional*): The prompt settings to record for a policy built without any (a
                trainer passes the ones it trained with); the policy's own otherwise.
        """
        save_adapter(self, save_directory, tokenizer=tokenizer, prompt_config=prompt_config)

    def push_to_hub(
        self,
        repo_id: str,
        tokenizer=None,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str = "Upload FLAG-Trader adapter",
        model_card: str | None = None,
    ) -> str:
        """Upload the adapter and a model card to `repo_id` (`flagtrl.models.hub.push_adapter_to_hub`).

        Returns:
            `str`: the URL of the commit.
        """
        return push_adapter_to_hub(self, repo_id, tokenizer, private, token, commit_message, model_card)

    @classmethod
    def from_pretrained(
        cls,
        adapter_name_or_path: str | Path,
        backbone: nn.Module | None = None,
        revision: str | None = None,
        dtype: torch.dtype | str | None = None,
        with_reference: bool = True,
        **backbone_kwargs,
    ) -> FlagPolicy:
        """Load a trained adapter of either kind (full top layers or LoRA; a folder, or a Hub repo id, from the local
        cache when `HF_HUB_OFFLINE=1`) on its base model (loaded with `flagtrl.models.loading.load_backbone`, which
        takes `backbone_kwargs` such as `quantization_config`, or the `backbone` you pass)."""
        saved = read_adapter(resolve_adapter_folder(adapter_name_or_path, revision))
        config = FlagPolicyConfig(**saved.settings)
        if backbone is None:
            backbone_kwargs.setdefault("num_trainable_layers", config.num_trainable_layers)
            backbone_kwargs.setdefault("quantize_trainable_layers", saved.peft_config is not None)
            backbone = load_backbone(
                config.base_model_name_or_path, revision=config.base_model_revision, dtype=dtype, **backbone_kwargs
            )
        policy = cls(backbone, config, with_reference=with_reference, peft_config=saved.peft_config)
        policy.load_adapter_state_dict(saved.state)
        return policy


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def last_token_layer(layer: nn.Module, hidden: torch.Tensor, last: torch.Tensor, position_embeddings) -> torch.Tensor:
    """A Llama-like decoder layer's output at one position per row (`last`), from its input at every position.

    The heads read only the last token of the last trainable layer, so its queries, attention output and MLP are
    needed there alone; its keys and values still span the prompt. Same operations as the transformers layer
    (pre-norm, RoPE, grouped-query attention, residuals), on 1 query instead of T.

    Args:
        layer (`nn.Module`): A `LlamaDecoderLayer` (or one in `LAST_TOKEN_LAYERS`).
        hidden (`torch.Tensor`): Its input, `(batch, length, hidden_size)`, right-padded.
        last (`torch.Tensor`): `(batch,)` the position of each row's last real token.
        position_embeddings (`tuple[torch.Tensor, torch.Tensor]`): RoPE (cos, sin), `(1 or batch, length, head_dim)`.

    Returns:
        `torch.Tensor`: `(batch, hidden_size)`.
    """
    attention = layer.self_attn
    batch, length, _ = hidden.shape
    head_dim = attention.head_dim
    rows = torch.arange(batch, device=hidden.device)
    normed = layer.input_layernorm(hidden)
    keys = attention.k_proj(normed).view(batch, length, -1, head_dim).transpose(1, 2)
    values = attention.v_proj(normed).view(batch, length, -1, head_dim).transpose(1, 2)
    query = attention.q_proj(normed[rows, last]).view(batch, -1, 1, head_dim)
    cos, sin = position_embeddings
    cos, sin = cos.expand(batch, -1, -1), sin.expand(batch, -1, -1)
    keys = keys * cos[:, None] + _rotate_half(keys) * sin[:, None]
    query = query * cos[rows, last][:, None, None] + _rotate_half(query) * sin[rows, last][:, None, None]
    groups = attention.num_key_value_groups
    keys, values = keys.repeat_interleave(groups, dim=1), values.repeat_interleave(groups, dim=1)
    visible = (torch.arange(length, device=hidden.device)[None, :] <= last[:, None])[:, None, None, :]
    output = torch.nn.functional.scaled_dot_product_attention(
        query, keys.to(query.dtype), values.to(query.dtype), attn_mask=visible, scale=attention.scaling
    )
    output = attention.o_proj(output.reshape(batch, -1))
    residual = hidden[rows, last] + output
    return residual + layer.mlp(layer.post_attention_layernorm(residual))
