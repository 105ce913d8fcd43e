"""Fuzz over EdgeSession.receive: whatever arrives next to a real cloud's answers (other
requests, other cloud epochs, huge or negative numbers, fields out of range), the edge never
raises and never hands on_tokens a token that is not the target's."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings, strategies as st

from engine_pairs import MAX_NEW, llama_pair
from spec_vlm_control.core.decode import build
from spec_vlm_control.core.protocol import (MODES, CommittedTokens, DecodeError,
                                            DecodingParams, Verdict)

pytestmark = pytest.mark.slow  # 60 hypothesis examples of whole requests (~9 s)

torch.set_num_threads(1)
EPOCH = 0x5EED
ROBOT, REQUEST = "go2", 1
VOCAB = 96                                   # the tiny Llama pair's vocabulary

anything = st.integers(-2**70, 2**70)
small = st.integers(-3, 20)
number = st.one_of(small, anything)
token = st.one_of(st.integers(0, VOCAB - 1), anything)
other_epoch = st.one_of(st.just(0), st.integers(0, 2**64 - 1)).filter(lambda e: e != EPOCH)


def verdicts(robot, request, epoch, accepted=number, next_token=token):
    return st.builds(Verdict, robot, request, round=small, stage=number, exit_layer=number,
                     assumed_length=number, assumed_hash=anything, block_length=small,
                     accepted=accepted, next_token=next_token, confidence=st.floats(),
                     finished=st.booleans(), cloud_epoch=epoch)


def commits(robot, request, epoch, start=number, tokens=st.lists(token, max_size=6)):
    return st.builds(CommittedTokens, robot, request, start=start, tokens=tokens,
                     hash_after=anything, finished=st.booleans(), cloud_epoch=epoch)


def errors(robot, request, epoch, code=number):
    return st.builds(DecodeError, robot, request, code=code, reason=st.text(max_size=8),
                     cloud_epoch=epoch)


def messages(kind):
    """Everything, kind by kind, that a correct edge must not act on as the target's word."""
    ours = (st.just(ROBOT), st.just(REQUEST))
    others = (st.sampled_from([ROBOT, "go2-7", ""]),
              st.one_of(anything, st.integers(0, 2**64 - 1)).filter(lambda r: r != REQUEST))
    any_epoch = st.one_of(st.just(EPOCH), anything)
    if kind == "other request":
        return st.one_of(verdicts(*others, any_epoch), commits(*others, any_epoch),
                         errors(*others, any_epoch))
    if kind == "other epoch":                  # a restarted cloud (or a forger) on our session
        return st.one_of(verdicts(*ours, other_epoch), commits(*ours, other_epoch),
                         errors(*ours, other_epoch))
    if kind == "out of range":                 # the serving epoch, fields the target never sends
        bad_token = st.one_of(st.integers(-2**70, -1), st.integers(VOCAB, 2**70))
        return st.one_of(verdicts(*ours, st.just(EPOCH), next_token=bad_token),
                         verdicts(*ours, st.just(EPOCH), accepted=st.integers(-2**70, -1)),
                         commits(*ours, st.just(EPOCH), start=st.integers(-2**70, -1)),
                         commits(*ours, st.just(EPOCH), start=st.integers(0, 3),
                                 tokens=st.lists(token, max_size=4).map(lambda t: t + [-1])))
    return errors(*ours, st.just(EPOCH), code=st.just(DecodeError.CODE_UNKNOWN_SESSION))


KINDS = ("other request", "other epoch", "out of range", "late unknown")


def forgery(message, epoch: int, token: int):
    """A real answer as another cloud process would word it, with another token."""
    if isinstance(message, Verdict):
        return replace(message, cloud_epoch=epoch, next_token=token)
    if isinstance(message, CommittedTokens):
        return replace(message, cloud_epoch=epoch, tokens=[token] * len(message.tokens))
    return None


@settings(derandomize=True, max_examples=60, deadline=None)
@given(mode=st.sampled_from(["plain", "pipelined", "cloud_led"]),
       injected=st.lists(st.tuples(st.integers(0, 40), st.sampled_from(KINDS).flatmap(messages)),
                         max_size=12),
       forged=st.lists(st.tuples(st.integers(0, 40), other_epoch,
                                 st.integers(0, VOCAB - 1)), max_size=6))
def test_edge_receive_never_raises_nor_delivers_a_token_not_the_targets(mode, injected, forged):
    pair = llama_pair(0)
    params = DecodingParams(mode=MODES[mode], block_size=3, max_new_tokens=MAX_NEW)
    delivered = []
    edge, cloud = build(pair.target, pair.draft(0.6, 1), pair.prompt, params,
                        on_tokens=lambda tokens, final: delivered.extend(tokens))
    assert pair.target.vocab_size == VOCAB
    cloud.epoch = EPOCH
    up, down = [], []
    edge.send, cloud.send = up.append, down.append
    edge.start()
    fatal = False                              # an other epoch's error on our session came
    for step in range(3000):
        if edge.done:
            break
        for message in up:
            cloud.receive(message)
        up.clear()
        if cloud.has_work():
            cloud.work()
        arriving, down[:] = list(down), []
        if edge.cloud_epoch is not None:       # garbage once the edge knows its cloud
            fakes = [forgery(m, e, t) for at, e, t in forged if at == step % 41 for m in arriving]
            arriving = [m for m in fakes if m is not None] + arriving
            arriving += [m for at, m in injected if at == step % 41]
        for message in arriving:
            fatal = fatal or isinstance(message, DecodeError) and not edge.done \
                and (message.robot_id, message.request_id) == (ROBOT, REQUEST) \
                and message.cloud_epoch != EPOCH
            edge.receive(message)
        if not edge.has_work() and not cloud.has_work() and not up:
            edge.clock.start(max(edge.clock.now(), edge.wake_time()))
        edge.work()
    assert edge.done
    assert delivered == pair.reference[: len(delivered)]
    if fatal:                                  # a restarted cloud's word ends it at once
        assert not edge.stats().ok and edge.error.startswith("cloud error")
    else:
        assert edge.stats().ok and edge.tokens == pair.reference
