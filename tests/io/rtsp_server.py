"""Serve an H.264 mp4 over RTSP on 127.0.0.1 with GStreamer's RTSP server (for test_rtsp.py).

Run with Debian's python3 (python3-gi, gir1.2-gst-rtsp-server-1.0), not the project's venv:
``/usr/bin/python3 rtsp_server.py CLIP.mp4`` prints the bound port on stdout, then serves
``rtsp://127.0.0.1:<port>/clip`` (real time, all clients share one stream) until killed.
"""

from __future__ import annotations

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main(clip: str) -> None:
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service("0")  # any free port
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( filesrc location="{clip}" ! qtdemux ! rtph264pay name=pay0 pt=96 config-interval=1 )'
    )
    server.get_mount_points().add_factory("/clip", factory)
    server.attach(None)
    print(server.get_bound_port(), flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main(sys.argv[1])
