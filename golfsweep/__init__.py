"""golfsweep: multi-seed sweeps for OpenAI Parameter Golf on Ray clusters."""

from golfsweep.errors import GolfsweepError, SpecError

__version__ = "0.1.0"

__all__ = ["GolfsweepError", "SpecError", "__version__"]
