"""The action language spoken by the VLM and executed by the controller (pure, no ROS)."""
from .grammar import (VERBS, ActionLimits, PlanError, Step, Unit, format_plan, format_step,
                      parse_step)
from .plan_stream import PlanStream

__all__ = ["VERBS", "ActionLimits", "PlanError", "PlanStream", "Step", "Unit", "format_plan",
           "format_step", "parse_step"]
