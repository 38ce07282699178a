#!/bin/bash
# The resolver's cold path (#13): `envsched validate | prepare | release` against a bare
# interpreter start (bench/cold_bench.py). Root.
#   bench/cold.sh [TREE]      (default: a mini tree built here)
exec bash "$(dirname "$0")/with-mini-tree.sh" cold_bench.py "$@"
