"""Scenarios: YAML files that launch hosts and guests as processes and script them
(docs/scenarios.md).  `schema` loads and checks a file, `model` evaluates conditions,
`runner` runs it, `procs` starts and reaps the processes."""

from .model import check, resolve
from .runner import ScenarioResult, StepResult, run_scenario
from .schema import SCHEMA, ScenarioError, load

__all__ = ["SCHEMA", "ScenarioError", "ScenarioResult", "StepResult", "check", "load",
           "resolve", "run_scenario"]
