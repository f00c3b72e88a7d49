"""The Hugging Face Hub side of an adapter: finding its folder (local, downloaded, or the offline cache) and pushing it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .adapter_io import ADAPTER_CONFIG_NAME, save_adapter
from .model_card import adapter_model_card


if TYPE_CHECKING:
    from .flag_policy import FlagPolicy


def resolve_adapter_folder(adapter_name_or_path: str | Path, revision: str | None = None) -> Path:
    """A local adapter folder, or the snapshot of a Hub repo (downloaded, or read from the cache when offline)."""
    path = Path(adapter_name_or_path)
    if path.is_dir():
        if not (path / ADAPTER_CONFIG_NAME).exists():
            raise FileNotFoundError(f"{path} has no {ADAPTER_CONFIG_NAME}: it is not a flagtrl adapter folder.")
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(adapter_name_or_path), revision=revision))
    except Exception as error:  # offline without a cached copy, unknown repo, no network
        raise OSError(
            f"Could not find the adapter {adapter_name_or_path!r}: it is neither a local folder nor a Hub repo "
            f"available here ({type(error).__name__}: {error})."
        ) from error


def push_adapter_to_hub(
    policy: FlagPolicy,
    repo_id: str,
    tokenizer=None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload FLAG-Trader adapter",
    model_card: str | None = None,
) -> str:
    """Save the adapter (`save_adapter`) and a model card (`README.md`) to a temporary folder and upload it.

    Returns:
        `str`: the URL of the commit.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as folder:
        save_adapter(policy, folder, tokenizer=tokenizer)
        card = model_card or adapter_model_card(policy.config_flag, repo_id)
        (Path(folder) / "README.md").write_text(card)
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message)
    return str(getattr(commit, "commit_url", commit))
