"""The demo's task loop (sim/episode.py) on a robot simulated in-process: the scripted expert
as the model, the ideal executor as the controller."""
from spec_vlm_control.action.grammar import format_plan, parse_step
from spec_vlm_control.sim.drive import run_plan
from spec_vlm_control.sim.episode import (FIRST_DEMO_SEED, MAX_DECISIONS, Decision, demo_scene,
                                          demo_seeds, run_task)
from spec_vlm_control.sim.expert import expert_steps
from spec_vlm_control.sim.scenes import SceneSampler
from spec_vlm_control.sim.tasks import TWO_GOAL, Task


class InProcessRobot:
    """`answer(world, task)` plays the models; plans run exactly (sim/drive.py)."""

    def __init__(self, answer, ok=True, task_mix="one_goal"):
        self.answer, self.ok, self.task_mix = answer, ok, task_mix
        self.world = self.task = None
        self.resets, self.decided, self.executed = [], 0, 0

    def reset(self, seed, start):
        scene = demo_scene(seed, self.task_mix)
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


def test_the_demo_samples_its_scenes_from_the_pairs_task_mix():
    """A pair trained on the two-goal mix: every third demo task is two-goal, from the first;
    the expert does each in one turn-walk-turn answer and then says `stop`."""
    for seed in demo_seeds(4):
        robot = InProcessRobot(expert, task_mix="two_goal_third")
        result = run_task(robot, seed, task_mix="two_goal_third")
        assert result.succeeded and result.task_mix == "two_goal_third"
        two_goal = Task.parse(result.instruction).type == TWO_GOAL
        assert two_goal == (seed in (FIRST_DEMO_SEED, FIRST_DEMO_SEED + 3)), result.instruction
        if two_goal:
            assert [len(d.answer.split(";")) for d in result.decisions] == [3, 1]
    assert run_task(InProcessRobot(expert), FIRST_DEMO_SEED).instruction == \
        SceneSampler(seed=FIRST_DEMO_SEED).sample().task.instruction   # the default: one-goal
