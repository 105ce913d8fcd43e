"""What the demo's decisions would have cost with cloud-only decoding, found after the run.

Each decision is decoded again from the same prompt (its instruction and the very JPEG the
edge sent) by the same target in virtual time (core/decode.py): one thread, each unit of
work charged its measured wall time, the link adding its emulated latency. Replaying, not
racing the live processes, keeps the comparison fair on a shared machine.
"""
from __future__ import annotations

from dataclasses import asdict

from ..core.protocol import DecodeRequest

BASELINES = ("stream", "per_token")   # cloud-only streaming; one request per token


def replay(target, draft, decision, mode: str, block_size: int, max_new_tokens: int,
           rtt_ms: float, exit_layers=(), exit_adapters=None) -> dict:
    """Stats of one decision decoded again in `mode` (a mode name or a baseline). The
    speculative mode replayed the same way is the like-for-like figure beside the
    baselines: the live one also pays for processes sharing the machine."""
    from ..core.decode import decode, mode_setup
    from ..core.link import LinkEmulator
    from ..core.prompts import request_prompt
    request = DecodeRequest("replay", decision.request_id, decision.instruction,
                            decision.jpeg, "jpeg" if decision.jpeg else "")
    prompt = request_prompt(target.prompts, request)
    params, edge_config = mode_setup(mode, block_size, max_new_tokens)
    one_way = rtt_ms / 2000.0
    out = decode(target.adapter, draft.adapter, prompt, params, costs=None,
                 edge_config=edge_config, exit_layers=exit_layers, exit_adapters=exit_adapters,
                 uplink=LinkEmulator(one_way, seed=1),
                 downlink=LinkEmulator(one_way, seed=2))
    stats = asdict(out.stats)
    stats["token_ids"] = list(out.tokens)
    stats["same_as_live"] = list(out.tokens) == list(decision.token_ids)
    return stats


def first_step_s(tokenizer, token_ids: list[int], latencies_s: list[float]) -> float:
    """When the first step of the plan was verified: the token that completes it (its `;`)
    or, for a one-step plan, the last token. The robot can start moving then."""
    t = 0.0
    for i, gap in enumerate(latencies_s[:len(token_ids)]):
        t += gap
        if ";" in tokenizer.decode(token_ids[: i + 1], skip_special_tokens=True):
            return t
    return t
