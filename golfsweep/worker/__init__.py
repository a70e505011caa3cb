"""Everything about one run, callable in-process without Ray: launch, timeouts, log parsing, artifact size."""

from golfsweep.worker._artifact import measure_artifact
from golfsweep.worker._env import LaunchMode, config_env, launch_command, run_environment, run_id
from golfsweep.worker._launch import (
    build_command,
    default_workdir_root,
    descendants,
    execute_run,
    kill_live_runs,
    kill_tree,
    preflight,
    run_env,
    run_workdir,
)
from golfsweep.worker._loglines import CurvePoint, MetricLine
from golfsweep.worker._logparse import (
    ParsedLog,
    companion_values,
    parse_log,
    parse_log_file,
    seed_from_filename,
)
from golfsweep.worker._types import ArtifactMeasurement, RunResult, RunSpec, RunState

__all__ = [
    "ArtifactMeasurement", "CurvePoint", "LaunchMode", "MetricLine", "ParsedLog",
    "RunResult", "RunSpec", "RunState", "build_command", "config_env", "launch_command", "run_environment", "run_id", "companion_values", "default_workdir_root", "descendants",
    "execute_run", "kill_live_runs", "kill_tree", "measure_artifact", "parse_log", "parse_log_file", "preflight", "run_env",
    "run_workdir", "seed_from_filename",
]
