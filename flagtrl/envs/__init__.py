from .trading_env import TradingEnv, TradingState


__all__ = ["TradingEnv", "TradingState"]
