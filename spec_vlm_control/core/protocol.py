"""Protocol messages as plain dataclasses, field for field the ROS messages in msg/.

The core speaks only these; the ROS nodes convert them 1:1 to and from `spec_vlm_control.msg`
at the boundary. Every edge<->cloud message names its request (robot_id, request_id) and,
where it concerns a block, the prefix the block assumes (assumed_length, assumed_hash; see
core/prefix.py), so duplicated, late, reordered or stale messages are recognised and ignored.
Request ids come from `RequestIds` (a boot nonce above a counter, so a restarted edge never
reuses one); every cloud->edge message carries the `cloud_epoch` of the process that sent it,
so the edge can tell a late answer of the cloud serving it from the word of a restarted one.
A capture time (`stamp_ns`) is integer nanoseconds of the robot's clock, from the camera
frame to the controller; the nodes carry it in std_msgs/Header.stamp.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field

PROTOCOL_VERSION = 3
MAX_BLOCK_TOKENS = 64   # the longest draft block a cloud accepts by default; edges stay within it


@dataclass
class DecodingParams:
    MODE_PLAIN = 0        # edge drafts k, waits for the final verdict
    MODE_EARLY_EXIT = 1   # as plain; the cloud also sends early verdicts (reported only)
    MODE_PREEMPTIVE = 2   # edge drafts the next block on the early verdict
    MODE_PIPELINED = 3    # ...and sends it at once, tagged with the prefix it assumes
    MODE_CLOUD_LED = 4    # cloud decodes by itself whenever no verifiable block is queued

    mode: int = MODE_PLAIN
    block_size: int = 4
    max_new_tokens: int = 32
    temperature: float = 0.0     # 0 = greedy
    top_p: float = 1.0
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    @property
    def early_verdicts(self) -> bool:
        return self.mode in (self.MODE_EARLY_EXIT, self.MODE_PREEMPTIVE, self.MODE_PIPELINED)


MODE_NAMES = {DecodingParams.MODE_PLAIN: "plain", DecodingParams.MODE_EARLY_EXIT: "early_exit",
              DecodingParams.MODE_PREEMPTIVE: "preemptive",
              DecodingParams.MODE_PIPELINED: "pipelined", DecodingParams.MODE_CLOUD_LED: "cloud_led"}
MODES = {name: mode for mode, name in MODE_NAMES.items()}


@dataclass
class Handshake:
    protocol_version: int = PROTOCOL_VERSION
    tokenizer_hash: str = ""      # core/models/tokenizer.py tokenizer_fingerprint
    target_model_hash: str = ""   # the target the edge expects; empty = any


@dataclass
class DecodeRequest:
    robot_id: str
    request_id: int
    instruction: str = ""
    image_data: bytes = b""       # JPEG (sensor_msgs/CompressedImage.data)
    image_format: str = ""        # empty = text-only request
    params: DecodingParams = field(default_factory=DecodingParams)
    handshake: Handshake = field(default_factory=Handshake)
    stamp_ns: int = 0             # capture time of the frame (text-only: of the instruction)


@dataclass
class DraftBlock:
    robot_id: str
    request_id: int
    round: int
    assumed_length: int
    assumed_hash: int
    tokens: list[int]
    support_sizes: list[int] = field(default_factory=list)   # sampling only: sparse q rows
    support_ids: list[int] = field(default_factory=list)
    support_probs: list[float] = field(default_factory=list)


@dataclass
class Verdict:
    STAGE_EARLY = 0
    STAGE_FINAL = 1

    robot_id: str
    request_id: int
    round: int
    stage: int
    exit_layer: int
    assumed_length: int
    assumed_hash: int
    block_length: int
    accepted: int
    next_token: int
    confidence: float = 1.0
    finished: bool = False
    cloud_epoch: int = 0


@dataclass
class CommittedTokens:
    robot_id: str
    request_id: int
    start: int
    tokens: list[int]
    hash_after: int
    finished: bool = False
    cloud_epoch: int = 0


@dataclass
class Cancel:
    robot_id: str
    request_id: int
    reason: str = ""


@dataclass
class DecodeError:
    CODE_HANDSHAKE = 1
    CODE_OVERLOADED = 2
    CODE_BAD_REQUEST = 3
    CODE_UNKNOWN_SESSION = 4
    CODE_INTERNAL = 5
    CODE_RATE_LIMITED = 6      # the robot opens requests faster than the cloud admits
    CODE_SESSION_GONE = 7      # the cloud knew the session and dropped it (expired,
                               # cancelled, evicted): it will never answer again

    robot_id: str
    request_id: int
    code: int
    reason: str = ""
    cloud_epoch: int = 0


@dataclass
class VerifiedTokens:
    request_id: int
    seq: int
    token_ids: list[int]
    text_delta: str = ""
    final: bool = False
    stamp_ns: int = 0             # the request's stamp_ns: what the plan was decided on


@dataclass
class PlanStatus:
    STARTED = 0
    FINISHED = 1
    REJECTED = 2
    PREEMPTED = 3
    NAMES = ("started", "finished", "rejected", "preempted")

    request_id: int
    status: int
    detail: str = ""


def session_key(message) -> tuple[str, int]:
    return message.robot_id, message.request_id


def new_epoch() -> int:
    """A random, non-zero identity of one cloud process (0 = none known)."""
    return secrets.randbelow((1 << 64) - 1) + 1


class RequestIds:
    """Request ids of one edge process: a random 32-bit boot nonce above a 32-bit counter.

    A restarted edge never reuses the id of a request that the cloud (which remembers
    finished sessions) or the controller (which runs a plan at most once) still knows, and
    ids are not predictable from outside."""

    def __init__(self, nonce: int | None = None):
        self.nonce = secrets.randbits(32) if nonce is None else nonce & 0xFFFFFFFF
        self.counter = 0

    def next(self) -> int:
        self.counter = (self.counter + 1) & 0xFFFFFFFF
        return (self.nonce << 32) | self.counter
