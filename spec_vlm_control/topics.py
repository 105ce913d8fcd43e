"""Topic names of the package, in one place for the nodes, the bridge, launch files and tests.

Protocol topics carry the edge-cloud messages (msg/); they are the only topics that cross the
bridge between the robot's ROS domain and the cloud's. Names are relative, so a namespace
(e.g. one per robot) applies to all of them.
"""
REQUEST = "spec_vlm/request"          # DecodeRequest   edge -> cloud
DRAFT = "spec_vlm/draft"              # DraftBlock      edge -> cloud
CANCEL = "spec_vlm/cancel"            # Cancel          edge -> cloud
VERDICT = "spec_vlm/verdict"          # Verdict         cloud -> edge
COMMITTED = "spec_vlm/committed"      # CommittedTokens cloud -> edge
ERROR = "spec_vlm/error"              # DecodeError     cloud -> edge

UPLINK = {REQUEST: "DecodeRequest", DRAFT: "DraftBlock", CANCEL: "Cancel"}
DOWNLINK = {VERDICT: "Verdict", COMMITTED: "CommittedTokens", ERROR: "DecodeError"}

IMAGE = "image/compressed"            # sensor_msgs/CompressedImage (JPEG)
IMAGE_RAW = "image_raw"               # sensor_msgs/Image (optional)
INSTRUCTION = "instruction"           # std_msgs/String
VERIFIED_TOKENS = "verified_tokens"   # VerifiedTokens  edge -> controller
PLAN_STATUS = "plan_status"           # PlanStatus      controller -> edge
LINK_FAILED = "link_failed"           # std_msgs/Bool   edge -> controller (latched)
REQUEST_STATS = "request_stats"       # RequestStats
ESTOP = "estop"                       # std_msgs/Bool (latched)
RANGE = "range"                       # sensor_msgs/Range
CMD_VEL = "cmd_vel"                   # geometry_msgs/Twist
ODOM = "odom"                         # nav_msgs/Odometry
SIM_SCENE = "sim/scene"               # std_msgs/UInt32 (latched): scene seed of the sim world
EDGE_FRAME = "edge/frame"             # std_msgs/Header edge ->: stamp of the frame it decides on
BASELINE_TOKENS = "baseline/verified_tokens"  # VerifiedTokens edge ->: the live baseline's
BASELINE_STATS = "baseline/request_stats"     # RequestStats   answers (edge `live_baseline`)
DIAGNOSTICS = "/diagnostics"          # diagnostic_msgs/DiagnosticArray

PROTOCOL_DEPTH = 100                  # reliable, keep last 100: bounded, never blocks
