from .flag_policy import FlagPolicy, FlagPolicyConfig, FlagPolicyOutput
from .loading import load_backbone, load_tokenizer


__all__ = ["FlagPolicy", "FlagPolicyConfig", "FlagPolicyOutput", "load_backbone", "load_tokenizer"]
