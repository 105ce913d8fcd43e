"""The fleet benchmark: many robots closed loop against one cloud verifier, in virtual time.

workload.py: the demo pair, the scenes the robots see and what a draft step costs;
simulation.py: one run (N robots, one variant) through the real EdgeSession and
CloudVerifier; capacity.py: the capacity search and the goals. `spec-vlm fleet-bench`
(commands/fleet_bench.py) runs them and writes the JSON and the plot.
"""
