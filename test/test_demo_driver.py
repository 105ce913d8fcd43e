"""The demo's driver on the real robot-side graph (sim, camera, controller), with the scripted
expert answering in place of the edge and the cloud: right answers must get each task done
in real time, through scene switching, plan execution, looking again and judging."""
from dataclasses import replace

import pytest
from geometry_msgs.msg import Twist, Vector3
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header, String, UInt32

import spec_vlm_control.msg as ros
from spec_vlm_control import topics
from spec_vlm_control.action.grammar import format_plan
from spec_vlm_control.nodes.common import LATCHED_QOS, PROTOCOL_QOS, SENSOR_QOS
from spec_vlm_control.nodes.demo_driver import DemoDriver, pose_of
from spec_vlm_control.recording import read_bag
from spec_vlm_control.sim.episode import run_task
from spec_vlm_control.sim.expert import expert_steps
from spec_vlm_control.sim.scenes import SceneSampler


class ExpertEdge:
    """Answers each instruction at once with the expert's plan for the pose on odom, in
    one final chunk, as the edge would publish a verified answer."""

    def __init__(self, node):
        self.node, self.seed, self.odom, self.frame, self.request_id = node, None, None, None, 0
        node.create_subscription(UInt32, topics.SIM_SCENE,
                                 lambda m: setattr(self, "seed", m.data), LATCHED_QOS)
        node.create_subscription(Odometry, topics.ODOM, lambda m: setattr(self, "odom", m), 10)
        node.create_subscription(CompressedImage, topics.IMAGE, self.keep, SENSOR_QOS)
        self.frame_pub = node.create_publisher(Header, topics.EDGE_FRAME, SENSOR_QOS)
        node.create_subscription(String, topics.INSTRUCTION, self.answer, PROTOCOL_QOS)
        self.request_pub = node.create_publisher(ros.DecodeRequest, topics.REQUEST, PROTOCOL_QOS)
        self.tokens_pub = node.create_publisher(ros.VerifiedTokens, topics.VERIFIED_TOKENS,
                                                PROTOCOL_QOS)
        self.stats_pub = node.create_publisher(ros.RequestStats, topics.REQUEST_STATS,
                                               PROTOCOL_QOS)

    def keep(self, frame: CompressedImage) -> None:
        """As the edge does: the frame it would decide on, and its stamp for the driver."""
        self.frame = frame
        self.frame_pub.publish(frame.header)

    def answer(self, instruction: String) -> None:
        self.request_id += 1
        scene = SceneSampler(seed=self.seed).sample()
        plan = format_plan(expert_steps(replace(scene.world, pose=pose_of(self.odom)),
                                        scene.task))
        request = ros.DecodeRequest(request_id=self.request_id, instruction=instruction.data)
        request.image = self.frame
        self.request_pub.publish(request)
        chunk = ros.VerifiedTokens(request_id=self.request_id, token_ids=[0], text_delta=plan,
                                   final=True)
        chunk.header.stamp = self.frame.header.stamp
        self.tokens_pub.publish(chunk)
        self.stats_pub.publish(ros.RequestStats(request_id=self.request_id, ok=True, tokens=1,
                                                rounds=1, token_latencies_s=[0.01]))


@pytest.mark.parametrize("seed", [10_003, 10_002, 10_001])   # go to, turn towards, stop
def test_right_answers_do_each_task_on_the_live_graph(ros_graph, config_dir, tmp_path, seed):
    ros_graph.start("sim", config_dir / "sim.yaml", params={"sim_seed": 0})
    ros_graph.start("camera", config_dir / "camera.yaml", params={"source": "sim",
                                                                   "sim_seed": 0})
    ros_graph.start("controller", [config_dir / "controller.yaml",
                                   config_dir / "controller_sim.yaml"])
    ExpertEdge(ros_graph.node)
    driver = DemoDriver(ros_graph.context, tmp_path / "bag")
    try:
        ros_graph.add_node(driver)
        driver.wait_for_graph(30.0)
        result = run_task(driver, seed)
    finally:
        driver.close()

    scene = SceneSampler(seed=seed).sample()
    assert result.succeeded, [(d.answer, d.plan_status) for d in result.decisions]
    assert result.decisions[-1].says_stop
    assert all(d.plan_status == "finished" or d.plan_status.startswith("preempted: obstacle")
               for d in result.decisions[:-1])
    assert result.trajectory[0][1:] == pytest.approx(
        (scene.world.pose.x, scene.world.pose.y, scene.world.pose.yaw))
    if scene.task.verb == "stop":
        assert len(result.decisions) == 1
    else:
        assert len(result.decisions) >= 2 and result.end != scene.world.pose
        # The robot moved only once told to: every decision saw a frame of this scene.
        assert all(d.jpeg and d.pose_before is not None for d in result.decisions)
    recorded = {m.topic for m in read_bag(tmp_path / "bag")}
    assert {topics.SIM_SCENE, topics.ODOM, topics.IMAGE, topics.INSTRUCTION,
            topics.VERIFIED_TOKENS, topics.REQUEST_STATS} <= recorded
    if scene.task.verb != "stop":
        assert {topics.CMD_VEL, topics.PLAN_STATUS} <= recorded


@pytest.mark.slow     # node processes
def test_the_paused_pass_holds_the_sim_and_the_camera_still(ros_graph, config_dir, tmp_path):
    """pause_world sets the sim's and the camera's `paused`: no odometry and no frames until
    it is lifted, and commands sent meanwhile move nothing (the demo's paused twins decide
    without their CPU, and their plans must not move the robot)."""
    import time
    ros_graph.start("sim", config_dir / "sim.yaml", params={"sim_seed": 0})
    ros_graph.start("camera", config_dir / "camera.yaml", params={"source": "sim",
                                                                   "sim_seed": 0})
    driver = DemoDriver(ros_graph.context, tmp_path / "bag")
    try:
        ros_graph.add_node(driver)
        ros_graph.wait_for(lambda: driver.odom is not None and driver.frame_stamp_ns > 0, 30,
                           "odometry and frames")
        driver.pause_world(True)
        time.sleep(0.3)                                 # what was in flight has arrived
        odom, frame, pose = driver.odom, driver.frame_stamp_ns, driver.pose()
        forward = ros_graph.node.create_publisher(Twist, topics.CMD_VEL, 10)
        for _ in range(10):                             # a plan run while paused
            forward.publish(Twist(linear=Vector3(x=0.5)))
            time.sleep(0.1)
        assert (driver.odom, driver.frame_stamp_ns) == (odom, frame)
        driver.pause_world(False)
        ros_graph.wait_for(lambda: driver.odom is not odom and driver.frame_stamp_ns > frame,
                           10, "odometry and frames again")
        time.sleep(0.3)
        assert driver.pose() == pose                    # ... moved nothing when it resumed
    finally:
        driver.close()
