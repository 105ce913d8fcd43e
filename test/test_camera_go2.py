"""Source `go2`: the camera node against a stand-in Go2 video service on loopback, built
from the SDK's own RPC server classes, answering VideoClient's GetImageSample requests."""
import hashlib
import json
import subprocess
import sys
import textwrap
import threading

import pytest

from test_camera_node import Viewer

STANDIN = textwrap.dedent("""
    import hashlib, json, sys, time
    import cv2, numpy as np
    from unitree_sdk2py.core.channel import ChannelFactoryInitialize
    from unitree_sdk2py.go2.video.video_api import (VIDEO_API_ID_GETIMAGESAMPLE,
                                                    VIDEO_API_VERSION, VIDEO_SERVICE_NAME)
    from unitree_sdk2py.rpc.server import Server

    ChannelFactoryInitialize(int(sys.argv[1]), "lo")
    FAIL_EVERY = int(sys.argv[2])

    class VideoHub(Server):
        '''The robot's `videohub` service: each sample is a new JPEG of a moving bar.'''

        def __init__(self):
            super().__init__(VIDEO_SERVICE_NAME)
            # unitree_sdk2py 1.0.3 starts this as a dict, on which _RegistBinaryHandler's
            # .add() fails; the robot's C++ server has no such problem.
            self._Server__apiBinarySet = set()
            self.count = 0

        def Init(self):
            self._SetApiVersion(VIDEO_API_VERSION)
            self._RegistBinaryHandler(VIDEO_API_ID_GETIMAGESAMPLE, self.sample, False)

        def sample(self, _request):
            self.count += 1
            if self.count % FAIL_EVERY == 0:       # the camera has a hiccup
                print(json.dumps({"failed": self.count}), flush=True)
                return 3202, []
            rgb = np.zeros((48, 64, 3), np.uint8)
            rgb[:, self.count % 64] = 255
            jpeg = cv2.imencode(".jpg", rgb)[1].tobytes()
            print(json.dumps({"served": self.count,
                              "sha": hashlib.sha256(jpeg).hexdigest()}), flush=True)
            return 0, list(jpeg)

    hub = VideoHub()
    hub.Init()
    hub.Start()
    print(json.dumps({"ready": True}), flush=True)
    while True:
        time.sleep(1)
""")


class StandInVideoHub:
    def __init__(self, domain, fail_every):
        self.served, self.failed = [], []
        self.popen = subprocess.Popen([sys.executable, "-c", STANDIN, str(domain),
                                       str(fail_every)], stdout=subprocess.PIPE, text=True,
                                      start_new_session=True)
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.ready.wait(20.0), "the stand-in video service did not start"

    def _read(self):
        for line in self.popen.stdout:
            if not line.startswith("{"):   # the SDK's own prints
                continue
            record = json.loads(line)
            if record.get("ready"):
                self.ready.set()
            elif "failed" in record:
                self.failed.append(record["failed"])
            else:
                self.served.append((record["served"], record["sha"]))

    def close(self):
        self.popen.kill()
        self.popen.wait()


@pytest.fixture
def video_hub(ros_graph):
    hub = StandInVideoHub(ros_graph.cyclone_domain, fail_every=4)
    yield hub
    hub.close()


def test_go2_camera_frames_are_the_robots_jpegs_and_a_failed_sample_is_skipped(
        ros_graph, config_dir, video_hub):
    viewer = Viewer(ros_graph)
    camera = ros_graph.start("camera", params_file=config_dir / "camera.yaml", params={
        "source": "go2", "go2_interface": "lo", "go2_domain_id": ros_graph.cyclone_domain,
        "rate_hz": 20.0, "wait_for_subscriber": True})
    got = viewer.wait_images(6, timeout=20.0)
    ros_graph.wait_for(lambda: video_hub.failed, 5.0, "a failed sample")
    shas = [hashlib.sha256(bytes(m.data)).hexdigest() for _, m in got]
    # Published byte for byte as the robot sent them, in order (best effort may drop one).
    count_of = {sha: count for count, sha in video_hub.served}
    counts = [count_of[s] for s in shas]
    assert counts == sorted(set(counts))
    assert counts[-1] > video_hub.failed[0], "no frame came after the failed sample"
    assert all(m.format == "jpeg" for _, m in got)
    ros_graph.wait_for(lambda: "GetImageSample (1001) returned 3202" in camera.log(), 5.0,
                       "the failed sample in the log")
    assert camera.alive()
