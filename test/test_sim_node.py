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
    first = time.monotonic()
    while time.monotonic() < first + 1.0:
        cmd.publish(twist)
        last = time.monotonic()
        time.sleep(0.05)
    ros_graph.wait_for(lambda: abs(odoms[-1].twist.twist.angular.z) < 1e-9, 5,
                       "the command timeout to stop the turn")
    turned = (yaw_of(odoms[-1]) - start.yaw + math.pi) % (2 * math.pi) - math.pi
    # 1 rad/s while commands come, then at most cmd_timeout_s (0.5 s) more on the last one
    # (plus one integration step, long on a loaded machine); less if the first commands were
    # lost during discovery.
    assert 0.6 < turned < (last - first) + 0.5 + 0.25
    position = odoms[-1].pose.pose.position
    assert (position.x, position.y) == (start.x, start.y)
    assert all(0.0 < r.range <= r.max_range for r in ranges)
