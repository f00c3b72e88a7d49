"""The learning curve of a run: the periodic evaluation's test-window Sharpe ratio against environment steps, from the
trainer's log history (presentation only; the numbers are `FlagPPOTrainer.evaluate`'s)."""

from __future__ import annotations

from pathlib import Path


def learning_curve_points(log_history: list[dict], env_steps_per_iteration: int, convention: str = "paper") -> dict:
    """`{(asset, agent): [(env_steps, sharpe), ...]}` from the `eval/<asset>/<agent>/<convention>_sharpe_ratio` logs.

    Args:
        log_history (`list[dict]`): `trainer.state.log_history`.
        env_steps_per_iteration (`int`): Environment steps of one PPO iteration, all ranks (`batch_size x processes`).
        convention (`str`, *optional*, defaults to `"paper"`): Metric convention (`paper` or `standard`).
    """
    suffix = f"/{convention}_sharpe_ratio"
    points: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for entry in log_history:
        for key, value in entry.items():
            if key.startswith("eval/") and key.endswith(suffix):
                _, asset, agent = key[: -len(suffix)].split("/", 2)
                points.setdefault((asset, agent), []).append((int(entry["step"]) * env_steps_per_iteration, value))
    return points


def plot_learning_curve(
    log_history: list[dict], env_steps_per_iteration: int, path: str | Path, convention: str = "paper"
) -> Path | None:
    """Write a PNG of each asset's evaluation Sharpe ratio (the trained policy as it learns; the untrained policy and
    buy-and-hold as reference lines) against environment steps. Returns the path, or `None` without evaluations."""
    from matplotlib.figure import Figure

    points = learning_curve_points(log_history, env_steps_per_iteration, convention)
    assets = sorted({asset for asset, _ in points})
    if not assets:
        return None
    fig = Figure(figsize=(5 * len(assets), 4))
    axes = fig.subplots(1, len(assets), squeeze=False)[0]
    for ax, asset in zip(axes, assets):
        trained = sorted(points.get((asset, "flag_trader"), []))
        ax.plot([s for s, _ in trained], [v for _, v in trained], marker="o", color="tab:blue", label="flag_trader")
        for agent, color in (("untrained", "tab:orange"), ("buy_and_hold", "gray")):
            if points.get((asset, agent)):
                ax.axhline(points[(asset, agent)][-1][1], color=color, linestyle="--", label=agent)
        ax.set_title(asset)
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"test-window Sharpe ({convention} convention)")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
