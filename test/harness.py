"""The tests start node processes with the package's own process code (spec-vlm demo uses
the same), re-exported here under the names the tests import."""
from spec_vlm_control.processes import (CONFIG, EXECUTABLES, PREFIX, SHARE,  # noqa: F401
                                        NodeProcess, RosGraph, free_port, ros_env,
                                        start_bridges)
