"""What the robots of the fleet benchmark ask, and with which models.

The demo pair (data/demo_pair, loaded and checked as the demo loads it) on scenes rendered by
the simulator with the pair's held-out sampler settings (demo_pair/pipeline.py, as its
evaluation renders them). A decision is a DecodeRequest carrying the instruction and the
JPEG frame, as the edge node sends it; the cloud builds its prompt from those bytes
(request_prompt, as the cloud node does) inside its measured pass, so decoding the image is
part of a prefill's cost. Which scene a robot's decision shows depends only on the seed, the
robot and the decision's index: identical for every variant.

Drafting is real (the draft model runs and proposes its own tokens) and charged to the
robot's virtual clock at the draft's measured cost: a line through a measured one-position
step and a measured prefill of a scene's prompt, timed like the cloud's passes (CPU time by
default). The robots' compute then cannot disturb the one measured side, the cloud.
"""
from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Optional

import torch

from ..core.models.base import Prompt
from ..core.prompts import request_prompt
from ..core.protocol import DecodeRequest, DecodingParams, Handshake

JPEG = "jpeg"


@dataclass(frozen=True)
class Scene:
    instruction: str
    jpeg: bytes
    answer: str                    # the expert's


@dataclass(frozen=True)
class DraftCost:
    """CostedAdapter's model of a draft pass: per_pass + per_position * positions."""

    per_pass: float
    per_position: float


@dataclass
class Workload:
    target: object                 # core.models.loading.LoadedModel
    draft: object
    exit_layers: list[int]
    exit_adapters: Optional[dict]
    scenes: list[Scene]
    block_size: int
    max_new_tokens: int
    draft_cost: DraftCost
    seed: int
    models: str
    _edge_prompts: dict = field(default_factory=dict, repr=False)

    def scene_of(self, robot: int, decision: int) -> int:
        return random.Random(f"{self.seed}:{robot}:{decision}").randrange(len(self.scenes))

    def request(self, robot: int, decision: int, params: DecodingParams) -> DecodeRequest:
        scene = self.scenes[self.scene_of(robot, decision)]
        return DecodeRequest(robot_name(robot), decision + 1, instruction=scene.instruction,
                             image_data=scene.jpeg, image_format=JPEG, params=params,
                             handshake=Handshake(tokenizer_hash=self.draft.adapter.fingerprint()))

    def edge_prompt(self, request: DecodeRequest) -> Prompt:
        """The robot's prompt of a request (built once per scene: the robot's own prompt
        building is not part of what is measured)."""
        key = (request.instruction, request.image_data)
        if key not in self._edge_prompts:
            self._edge_prompts[key] = request_prompt(self.draft.prompts, request)
        return self._edge_prompts[key]

    def cloud_prompt(self, request: DecodeRequest) -> Prompt:
        return request_prompt(self.target.prompts, request)

    def describe(self) -> dict:
        return dict(models=self.models, target_layers=self.target.adapter.num_layers,
                    exit_layers=self.exit_layers, trained_exits=self.exit_adapters is not None,
                    scenes=len(self.scenes), scene_seed=self.seed, block_size=self.block_size,
                    max_new_tokens=self.max_new_tokens,
                    drafting="real draft-model calls charged at the draft's measured cost",
                    draft_cost_s=dict(per_pass=self.draft_cost.per_pass,
                                      per_position=self.draft_cost.per_position))


def robot_name(robot: int) -> str:
    return f"robot{robot}"


def render(n: int, seed: int, task_mix: str) -> list[Scene]:
    """n scenes of the pair's held-out sampler settings and task mix (its pair.json) from
    sampler seed `seed`, each frame JPEG-encoded once, as the camera node sends it."""
    from ..camera.frame import encode_jpeg
    from ..demo_pair.pipeline import Plan
    from ..demo_pair.vocabulary import IMAGE_SIDE
    from ..sim.camera import EgoCamera
    from ..sim.dataset import render_scenes
    spec = Plan().heldout_off_grid
    scenes = render_scenes(n, seed, EgoCamera(width=IMAGE_SIDE, height=IMAGE_SIDE),
                           on_grid=spec.on_grid, max_forward=spec.max_forward, task_mix=task_mix)
    return [Scene(scenes.instructions[i], encode_jpeg(scenes.images[i], spec.jpeg_quality),
                  scenes.answers[i]) for i in range(n)]


def fast_time(job, runs: int, timer=time.perf_counter) -> float:
    """The median of the faster half of `runs` (at least 3) timings of `job` by `timer`: a
    busy machine only ever makes a run slower."""
    times = []
    for _ in range(max(3, runs)):
        t0 = timer()
        job()
        times.append(timer() - t0)
    return statistics.median(sorted(times)[: max(1, len(times) // 2)])


def draft_cost(draft, prompt: Prompt, steps: int, timer=time.process_time) -> DraftCost:
    """Measured on this machine with `timer`, one thread: medians of the faster half of
    `steps` one-position steps and of `steps // 10` prefills."""
    from ..core.sequence import Sequence
    with torch.inference_mode():
        seq = Sequence(draft.adapter, prompt)
        step = fast_time(lambda: (seq.feed([]), seq.settle([])), steps, timer)
        prefill = fast_time(lambda: Sequence(draft.adapter, prompt), steps // 10, timer)
    per_position = max(0.0, (prefill - step) / max(1, int(prompt.input_ids.shape[1]) - 1))
    return DraftCost(step - per_position, per_position)


def load(models: Optional[str], scenes: int, seed: int, block_size: int,
         calibration_steps: int = 300, timer=time.process_time) -> Workload:
    """The pair (the packaged one unless `models` names a folder of the same layout), `scenes`
    rendered scenes and the draft's measured cost."""
    from ..demo.pair import load_checked, open_pair
    pair = open_pair(models)
    loaded = load_checked(pair, "fp32")
    rendered = render(scenes, seed, pair.task_mix)
    workload = Workload(loaded.target, loaded.draft, list(pair.exit_layers),
                        loaded.exit_adapters, rendered, block_size, pair.max_new_tokens,
                        DraftCost(0.0, 0.0), seed, str(pair.root))
    probe = workload.request(0, 0, DecodingParams())
    workload.draft_cost = draft_cost(loaded.draft, workload.edge_prompt(probe),
                                     calibration_steps, timer)
    return workload
