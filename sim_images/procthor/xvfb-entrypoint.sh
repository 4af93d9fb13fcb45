#!/bin/sh
# Start a virtual X server for AI2-THOR's X11 platform, then run the command (a run worker, the code
# server). CloudRendering (Vulkan, lavapipe) does not need it; it costs a few MB when unused.
set -eu
Xvfb "${DISPLAY:-:99}" -screen 0 1024x768x24 -nolisten tcp >/tmp/xvfb.log 2>&1 &
exec "$@"
