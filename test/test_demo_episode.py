"""The demo's task loop (sim/episode.py) on a robot simulated in-process: the scripted expert
as the model, the ideal executor as the controller."""
from spec_vlm_control.action.grammar import format_plan, parse_step
from spec_vlm_control.sim.drive import run_plan
from spec_vlm_control.sim.episode import (FIRST_DEMO_SEED, MAX_DECISIONS, Decision, demo_seeds,
                                          run_task)
from spec_vlm_control.sim.expert import expert_steps
from spec_vlm_control.sim.scenes import SceneSampler
from spec_vlm_control.sim.tasks import Task


class InProcessRobot:
    """`answer(world, task)` plays the models; plans run exactly (sim/drive.py)."""

    def __init__(self, answer, ok=True):
        self.answer, self.ok = answer, ok
        self.world = self.task = None
        self.resets, self.decided, self.executed = [], 0, 0

    def reset(self, seed, start):
        scene = SceneSampler(seed=seed).sample()
        self.world, self.task = scene.world, scene.task
        assert self.world.pose == start
        self.resets.append(seed)

    def decide(self, instruction):
        assert Task.parse(instruction) == self.task
        self.decided += 1
        return Decision(self.decided, instruction, answer=self.answer(self.world, self.task),
                        stats={"ok": self.ok})

    def execute(self, decision):
        self.executed += 1
        steps = [parse_step(s)[0] for s in decision.answer.split(";") if s.strip()]
        run_plan(self.world, steps)

    def pose(self):
        return self.world.pose

    def trajectory(self):
        return [(0.0, self.world.pose.x, self.world.pose.y, self.world.pose.yaw)]


def expert(world, task):
    return format_plan(expert_steps(world, task))


def test_demo_scenes_are_fresh_and_the_expert_does_every_task():
    seeds = demo_seeds(12)
    assert seeds[0] == FIRST_DEMO_SEED and len(set(seeds)) == 12
    for seed in seeds:
        robot = InProcessRobot(expert)
        result = run_task(robot, seed)
        assert robot.resets == [seed]
        assert result.succeeded, (seed, result.instruction, [d.answer for d in result.decisions])
        assert result.decisions[-1].says_stop            # it re-decided until done
        assert len(result.decisions) <= MAX_DECISIONS
        assert robot.executed == len(result.decisions) - 1   # `stop` itself is not waited on


def test_a_robot_that_never_says_stop_is_cut_off_and_judged_by_where_it_ended():
    robot = InProcessRobot(lambda world, task: "turn_left 90")
    seed = next(s for s in demo_seeds(50) if SceneSampler(seed=s).sample().task.verb == "go_to")
    result = run_task(robot, seed)
    assert len(result.decisions) == MAX_DECISIONS == robot.executed
    assert not result.succeeded                          # turning in place reaches nothing
    start = SceneSampler(seed=seed).sample().world.pose
    assert (result.end.x, result.end.y) == (start.x, start.y)
    assert result.end.yaw != start.yaw                   # but it did turn


def test_a_failed_request_ends_the_task_without_executing_anything():
    robot = InProcessRobot(lambda world, task: "forward 1", ok=False)
    result = run_task(robot, FIRST_DEMO_SEED)
    assert len(result.decisions) == 1 and robot.executed == 0
    assert result.end == result.start
