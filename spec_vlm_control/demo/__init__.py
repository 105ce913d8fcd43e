"""`spec-vlm demo`: the whole graph, closed loop, on the simulated Go2 world (see
commands/demo.py): the trained pair's folder, starting the graph, replaying the decisions
against cloud-only decoding, and the report."""
