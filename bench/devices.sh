#!/bin/bash
# GPUs and devices (#12): per-job and per-task cost of `gpus = "nvidia"` against the same
# environment without (bench/devices_bench.py). Root, a node without an NVIDIA driver.
#   bench/devices.sh [TREE]      (default: a mini tree built here)
exec bash "$(dirname "$0")/with-mini-tree.sh" devices_bench.py "$@"
