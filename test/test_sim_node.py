"""The `sim` node integrates cmd_vel into odometry and reads the range ahead."""
import math
import time

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from sensor_msgs.msg import Range

from spec_vlm_control import topics
from spec_vlm_control.nodes.common import SENSOR_QOS
from spec_vlm_control.sim.scenes import SceneSampler


def yaw_of(msg: Odometry) -> float:
    q = msg.pose.pose.orientation
    return math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z))


def test_turning_in_place_changes_only_the_heading(ros_graph, config_dir):
    odoms, ranges = [], []
    ros_graph.node.create_subscription(Odometry, topics.ODOM, odoms.append, 10)
    ros_graph.node.create_subscription(Range, topics.RANGE, ranges.append, SENSOR_QOS)
    cmd = ros_graph.node.create_publisher(Twist, topics.CMD_VEL, 10)
    ros_graph.start("sim", config_dir / "sim.yaml", params={"sim_seed": 4})
    ros_graph.wait_for(lambda: odoms and ranges, 20, "odometry and range")
    start = SceneSampler(seed=4).sample().world.pose
    first = odoms[-1].pose.pose.position
    assert (first.x, first.y) == (start.x, start.y)        # the scene's start pose
    twist = Twist()
    twist.angular.z = 1.0
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        cmd.publish(twist)
        time.sleep(0.05)
    # Without commands the turn stops by itself (cmd_timeout_s), and the heading then holds.
    ros_graph.wait_for(lambda: abs(odoms[-1].twist.twist.angular.z) < 1e-9, 5,
                       "the command timeout to stop the turn")
    turned = (yaw_of(odoms[-1]) - start.yaw + math.pi) % (2 * math.pi) - math.pi
    assert turned > 0.3                         # counter-clockwise, as commanded
    count = len(odoms)
    ros_graph.wait_for(lambda: len(odoms) > count + 10, 5, "more odometry")
    assert abs(yaw_of(odoms[-1]) - yaw_of(odoms[count - 1])) < 1e-9
    position = odoms[-1].pose.pose.position
    assert (position.x, position.y) == (start.x, start.y)
    assert all(0.0 < r.range <= r.max_range for r in ranges)


def test_a_scene_seed_on_sim_scene_moves_the_robot_into_that_room(ros_graph, config_dir):
    from std_msgs.msg import UInt32
    from spec_vlm_control.nodes.common import LATCHED_QOS
    odoms = []
    ros_graph.node.create_subscription(Odometry, topics.ODOM, odoms.append, 10)
    scene_pub = ros_graph.node.create_publisher(UInt32, topics.SIM_SCENE, LATCHED_QOS)
    cmd = ros_graph.node.create_publisher(Twist, topics.CMD_VEL, 10)
    ros_graph.start("sim", config_dir / "sim.yaml", params={"sim_seed": 4})
    ros_graph.wait_for(lambda: odoms, 20, "odometry")
    twist = Twist()
    twist.angular.z = 1.0
    cmd.publish(twist)                       # moving when the scene changes
    ros_graph.wait_for(lambda: abs(odoms[-1].twist.twist.angular.z) > 0, 5, "the turn")
    scene_pub.publish(UInt32(data=10_007))
    start = SceneSampler(seed=10_007).sample().world.pose

    def at_start():
        p = odoms[-1].pose.pose.position
        return (p.x, p.y) == (start.x, start.y) and abs(yaw_of(odoms[-1]) - start.yaw) < 1e-9
    ros_graph.wait_for(at_start, 5, "the new scene's start pose")
    # At rest there: the command of the old scene does not carry over.
    count = len(odoms)
    ros_graph.wait_for(lambda: len(odoms) > count + 5, 5, "more odometry")
    assert at_start() and odoms[-1].twist.twist.angular.z == 0.0


def test_corrupt_velocity_commands_are_ignored_and_never_integrated(ros_graph, config_dir):
    odoms = []
    ros_graph.node.create_subscription(Odometry, topics.ODOM, odoms.append, 10)
    cmd = ros_graph.node.create_publisher(Twist, topics.CMD_VEL, 10)
    sim = ros_graph.start("sim", config_dir / "sim.yaml", params={"sim_seed": 4})
    ros_graph.wait_for(lambda: odoms and cmd.get_subscription_count() > 0, 20, "odometry")
    start = SceneSampler(seed=4).sample().world.pose
    for corrupt in (float("nan"), float("inf"), -float("inf"), 1e9):
        twist = Twist()
        twist.linear.x, twist.angular.z = 0.5, corrupt
        cmd.publish(twist)
        time.sleep(0.1)
    count = len(odoms)
    ros_graph.wait_for(lambda: len(odoms) > count + 5, 5, "more odometry")
    pose = odoms[-1].pose.pose
    assert (pose.position.x, pose.position.y) == (start.x, start.y)   # nothing integrated
    assert all(math.isfinite(v) for v in (pose.orientation.z, pose.orientation.w))
    assert "ignored: not finite or beyond cmd_limit" in sim.log()
    twist = Twist()
    twist.angular.z = 1.0                                  # a sound command still drives it
    cmd.publish(twist)
    ros_graph.wait_for(lambda: abs(odoms[-1].twist.twist.angular.z) > 0, 5, "the turn")
