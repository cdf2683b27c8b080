"""Keras Tuner integration: learned-sampler oracles (SETN, TNAS) and the one-shot tuner."""

from tfnas.tuner.one_shot import OneShotTuner
from tfnas.tuner.setn import SETNOracle
from tfnas.tuner.tnas import TNASOracle

__all__ = ["OneShotTuner", "SETNOracle", "TNASOracle"]
