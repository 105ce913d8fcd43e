"""The simulated world's kinematics, range sensor and odometry."""
import math

import pytest

from spec_vlm_control.sim.world import (BodyVelocity, Obstacle, Pose, SceneObject, SpeedLimits,
                                        World)


def world_at(x=3.0, y=3.0, yaw=0.0, **kw) -> World:
    return World(width=6.0, depth=6.0, pose=Pose(x, y, yaw), **kw)


@pytest.mark.parametrize("yaw", [0.0, math.pi / 2, -2.0])
def test_forward_walks_along_heading(yaw):
    w = world_at(yaw=yaw)
    for _ in range(20):
        w.step(BodyVelocity(vx=0.5), 0.1)
    assert w.pose.x == pytest.approx(3.0 + math.cos(yaw), abs=1e-9)
    assert w.pose.y == pytest.approx(3.0 + math.sin(yaw), abs=1e-9)
    assert w.pose.yaw == pytest.approx(yaw)
    assert w.time == pytest.approx(2.0)


def test_sideways_is_to_the_left_of_heading():
    w = world_at(yaw=math.pi / 2)
    w.step(BodyVelocity(vy=0.5), 1.0)
    assert (w.pose.x, w.pose.y) == pytest.approx((2.5, 3.0))


def test_turn_integrates_and_wraps():
    w = world_at(yaw=3.0)
    w.step(BodyVelocity(vyaw=1.0), 0.5)
    assert w.pose.yaw == pytest.approx(3.5 - 2 * math.pi)


def test_turning_while_walking_follows_an_arc():
    w = world_at(x=3.0, y=2.0)
    for _ in range(100):   # a quarter circle of radius 1 m
        w.step(BodyVelocity(vx=math.pi / 2 / 10, vyaw=math.pi / 2 / 10), 0.1)
    assert (w.pose.x, w.pose.y, w.pose.yaw) == pytest.approx((4.0, 3.0, math.pi / 2), abs=1e-3)


def test_speed_limits_clamp_each_axis():
    lim = SpeedLimits()
    w = world_at()
    w.step(BodyVelocity(vx=9.0, vy=-9.0, vyaw=9.0), 1.0)
    assert w.velocity == BodyVelocity(lim.vx_forward, -lim.vy, lim.vyaw)
    assert math.hypot(w.pose.x - 3.0, w.pose.y - 3.0) <= math.hypot(lim.vx_forward, lim.vy) + 1e-9
    w.step(BodyVelocity(vx=-9.0), 1.0)
    assert w.velocity.vx == -lim.vx_backward


def test_walls_obstacles_and_objects_stop_the_robot():
    w = world_at(x=5.5, yaw=0.0)
    for _ in range(50):
        w.step(BodyVelocity(vx=1.0), 0.1)
    assert 6.0 - w.robot_radius - 0.05 <= w.pose.x <= 6.0 - w.robot_radius
    w = world_at(obstacles=(Obstacle(4.0, 2.0, 5.0, 4.0),))
    for _ in range(50):
        w.step(BodyVelocity(vx=1.0), 0.1)
    assert 4.0 - w.robot_radius - 0.05 <= w.pose.x <= 4.0 - w.robot_radius
    w = world_at(objects=(SceneObject("red", "ball", 4.0, 3.0, 0.2),))
    for _ in range(50):
        w.step(BodyVelocity(vx=1.0), 0.1)
    assert w.pose.x == pytest.approx(4.0 - 0.2 - w.robot_radius, abs=0.05)


def test_range_ahead_sees_the_nearest_surface():
    w = world_at(x=1.0)
    assert w.range_ahead(max_range=10) == pytest.approx(5.0)
    assert w.range_ahead(max_range=2) == 2.0
    w.objects = (SceneObject("red", "box", 3.0, 3.0, 0.2),)
    assert w.range_ahead() == pytest.approx(1.8)
    w.obstacles = (Obstacle(2.0, 2.5, 2.5, 3.5),)
    assert w.range_ahead() == pytest.approx(1.0)
    w.pose = Pose(1.0, 3.0, math.pi / 2)
    assert w.range_ahead() == pytest.approx(3.0)


def test_relative_bearing_and_gap():
    w = world_at(x=1.0, y=1.0, yaw=math.pi / 2)
    ball = SceneObject("red", "ball", 2.0, 2.0, 0.1)
    bearing, gap = w.relative(ball)
    assert math.degrees(bearing) == pytest.approx(-45.0)
    assert gap == pytest.approx(math.sqrt(2) - 0.1)
    box = SceneObject("red", "box", 3.0, 1.0, 0.2)
    assert w.relative(box) == pytest.approx((-math.pi / 2, 1.8))
