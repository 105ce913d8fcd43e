"""What the demo's decisions would have cost with cloud-only decoding, found after the run.

Each decision is decoded again from the same prompt (its instruction and the very JPEG the
edge sent) by the same target in virtual time (core/decode.py): one thread, each unit of
work charged its measured wall time, the link adding its emulated latency. Replaying, not
racing the live processes, keeps the comparison fair on a shared machine.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict

from ..core.protocol import MODE_NAMES, DecodeRequest

MODES = tuple(MODE_NAMES.values())    # plain, early_exit, preemptive, pipelined, cloud_led
BASELINES = ("stream", "per_token")   # cloud-only streaming; one request per token


class Replayer:
    """Decodes decisions again against one CloudVerifier for the whole run, as the live
    cloud serves every decision: its pass costs and the robot's draft acceptance carry
    from one decision to the next (a cloud per decision would start every replay cold)."""

    def __init__(self, target, draft, block_size: int, max_new_tokens: int, rtt_ms: float,
                 exit_layers=(), exit_adapters=None):
        from ..core.clock import MeasuredClock
        from ..core.cloud import CloudConfig, CloudVerifier
        from ..core.prompts import request_prompt
        from ..core.target_pass import TargetPass
        self.target, self.draft = target, draft
        self.block_size, self.max_new_tokens, self.rtt_ms = block_size, max_new_tokens, rtt_ms
        # one robot asks for every replay back to back: no request-rate limit applies
        config = CloudConfig(tokenizer_hash=target.adapter.fingerprint(),
                             max_requests_per_s=1e9, request_burst=1 << 30)
        self.cloud = CloudVerifier(
            target.adapter, lambda request: request_prompt(target.prompts, request),
            MeasuredClock(), config=config,
            target_pass=TargetPass.with_layers(target.adapter, exit_layers, exit_adapters))
        self.request_ids = itertools.count(1)
        self.turn = 0

    def replay(self, decision, mode: str) -> dict:
        """Stats of one decision decoded again in `mode` (a mode name or a baseline)."""
        from ..core.decode import build, mode_setup, run_request
        from ..core.link import LinkEmulator
        from ..core.prompts import request_prompt
        request = DecodeRequest("replay", next(self.request_ids), decision.instruction,
                                decision.jpeg, "jpeg" if decision.jpeg else "")
        params, edge_config = mode_setup(mode, self.block_size, self.max_new_tokens)
        edge, _ = build(self.target.adapter, self.draft.adapter,
                        request_prompt(self.target.prompts, request), params, costs=None,
                        edge_config=edge_config, cloud=self.cloud, robot_id=request.robot_id,
                        request_id=request.request_id, instruction=request.instruction,
                        image_data=request.image_data, image_format=request.image_format)
        one_way = self.rtt_ms / 2000.0
        out = run_request(edge, self.cloud, LinkEmulator(one_way, seed=1),
                          LinkEmulator(one_way, seed=2), start=self.cloud.clock.now())
        stats = asdict(out.stats)
        stats["token_ids"] = list(out.tokens)
        stats["same_as_live"] = list(out.tokens) == list(decision.token_ids)
        return stats

    def every_mode(self, decision, modes=MODES + BASELINES) -> dict[str, dict]:
        """The decision replayed in every mode and baseline, starting one later each call
        (interleaved, so a drift in the machine's load hits all alike)."""
        order = modes[self.turn % len(modes):] + modes[:self.turn % len(modes)]
        self.turn += 1
        return {mode: self.replay(decision, mode) for mode in order}


def replay(target, draft, decision, mode: str, block_size: int, max_new_tokens: int,
           rtt_ms: float, exit_layers=(), exit_adapters=None) -> dict:
    """One decision decoded again in `mode` on a cloud of its own (cold: prefer one
    Replayer for a whole run). The speculative mode replayed the same way is the
    like-for-like figure beside the baselines: the live one also pays for processes
    sharing the machine."""
    return Replayer(target, draft, block_size, max_new_tokens, rtt_ms, exit_layers,
                    exit_adapters).replay(decision, mode)


def first_step_s(tokenizer, token_ids: list[int], latencies_s: list[float]) -> float:
    """When the first step of the plan was verified: the token that completes it (its `;`)
    or, for a one-step plan, the last token. The robot can start moving then."""
    t = 0.0
    for i, gap in enumerate(latencies_s[:len(token_ids)]):
        t += gap
        if ";" in tokenizer.decode(token_ids[: i + 1], skip_special_tokens=True):
            return t
    return t
