"""Traffic simulator with ground truth (issue 3): `simulate(scenario, scale, seed, out)`."""

from distillguard.simulate.engine import SimResult, simulate
from distillguard.simulate.scenario import Persona, Scenario, builtin_names, load_scenario

__all__ = ["Persona", "Scenario", "SimResult", "builtin_names", "load_scenario", "simulate"]
