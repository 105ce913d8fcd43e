"""Co-located sites (graphs.Colocated, colocated.py): the edge or the cloud with its bridge
in one process (robot_site.launch.py, cloud_site.launch.py, `spec-vlm bench-link --layouts
site`); each node keeps its own YAML sections, order of files and parameters."""
import subprocess

import pytest

from spec_vlm_control import graphs
from spec_vlm_control.processes import CONFIG, EXECUTABLES, ros_env


def test_the_site_launch_files_put_each_model_node_with_its_bridge():
    for graph, members in ((graphs.ROBOT_SITE_GRAPH, ["edge", "bridge"]),
                           (graphs.CLOUD_SITE_GRAPH, ["cloud", "bridge"])):
        (site,) = [p for p in graph.processes if isinstance(p, graphs.Colocated)]
        assert [n.executable for n in site.members] == members
        # the same nodes as the separate layout's launch file, in fewer processes
        separate = {"robot_site": graphs.ROBOT_GRAPH, "cloud_site": graphs.CLOUD_GRAPH}
        assert sorted(graph.nodes, key=repr) == sorted(separate[graph.name].nodes, key=repr)
    assert graphs.CLOUD_SITE.respawn                        # the verifier's respawn, kept


def test_each_member_reads_its_own_files_in_its_own_order():
    site = graphs.Colocated("robot_site", (graphs.DEMO_EDGE,
                                           graphs.ROBOT_BRIDGE.reading(graphs.DEMO_OVERLAY)))
    # demo.yaml overrides bridge_robot.yaml for the bridge as it does edge.yaml for the edge
    assert site.files == ("edge.yaml", "bridge_robot.yaml", "demo.yaml")
    assert graphs.CLOUD_SITE.files == ("cloud.yaml", "bridge_cloud.yaml")


def test_parameters_set_per_executable_reach_each_member_and_conflicts_are_refused():
    site = graphs.ROBOT_SITE
    assert site.share({"edge": {"mode": "plain"}, "bridge": {"mode": "peer"}, "cloud": {}}) \
        == {"edge": {"mode": "plain"}, "bridge": {"mode": "peer"}}
    assert site.params["robot_id"] is graphs.ROBOT_ID
    clash = graphs.Colocated("robot_site", (graphs.EDGE.reading(mode="plain"),
                                            graphs.ROBOT_BRIDGE.reading(mode="peer")))
    with pytest.raises(ValueError, match="'mode' differs"):
        clash.params


@pytest.mark.slow
def test_a_site_that_cannot_build_a_node_says_why_in_one_line_and_exits_1(domain_id):
    """The bridge is built, the edge is refused (no model): the bridge is closed again and
    the process ends as a lone node does, parameters reaching each node by its name."""
    run = subprocess.run(
        [str(EXECUTABLES / "robot_site"), "--ros-args",
         "--params-file", str(CONFIG / "edge.yaml"),
         "--params-file", str(CONFIG / "bridge_robot.yaml"),
         "-p", "edge:model:=''", "-p", "bridge:mode:=peer", "-p", "edge:mode:=plain"],
        env=ros_env(domain_id), capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert "robot bridge: peer" in run.stdout + run.stderr      # the bridge was up
    (error,) = [line for line in run.stderr.splitlines() if "error:" in line]
    assert error == "robot_site: error: parameter 'model' is required (the draft model)"
