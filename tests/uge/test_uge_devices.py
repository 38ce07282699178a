"""GPUs through the real Grid Engine integration (#12): a batch job in a `gpus = "nvidia"`
environment (the root prolog builds the view, the set-user-ID starter enters it) sees the node's
GPU device nodes and the driver's library and tool (stand-ins: gpulib), in a real Debian tree
whose /etc/profile resets PATH (Grid Engine runs the script as a login shell), without the tree
being touched; a job whose environment needs a GPU on a node without one is refused in one line
(exit 69) and its payload never runs; with gpus_required = false it runs without."""
from __future__ import annotations

import glob
import shutil
import time
from pathlib import Path

import pytest

import gpulib
from gpulib import MARKER, gpu_environments

pytestmark = pytest.mark.uge

PROBE = """#!/bin/sh
echo "CHOS=$CHOS"
test -c /dev/nvidia0 && test -c /dev/nvidiactl && echo "NODES=chr"
echo x > /dev/nvidia0 && echo "WRITE=ok"
echo "SMI=$(nvidia-smi)"
echo "LDP=$LD_LIBRARY_PATH"
echo "LIBS=$(ls /.envsched/gpu/lib | tr '\\n' ' ')"
{payload}
"""


@pytest.fixture(scope="module")
def gpu_site(uge_site, real_tree):
    """The stand-in driver under the cluster's root-owned directory (its payload reached through
    /local, the host's root in every view), and the policy with `gpu` (needs a GPU) and `gpu-opt`."""
    if not shutil.which("gcc"):
        pytest.skip("needs gcc")
    if glob.glob("/dev/nvidia*"):
        pytest.skip("this host has a real NVIDIA driver (or another test's stand-ins): ours would shadow them")
    driver = gpulib.build_driver(uge_site.cluster.dir / "gpu")
    original = uge_site.policy.read_text()
    assert "[site]\n" in original
    text = original.replace("[site]\n", f'[site]\ngpu_libraries = "{driver}/nvliblist.conf"\n'
                                         f'gpu_search_dirs = ["{driver}/lib", "{driver}/bin"]\n', 1)
    uge_site.policy.write_text(text + gpu_environments(real_tree))
    try:
        yield driver
    finally:
        uge_site.policy.write_text(original)
        shutil.rmtree(driver)


def _released(uge_site, timeout: float = 15) -> None:
    """Every pin of the site released (the epilog runs just after the job has left qstat), so no
    view still holds a stand-in device node when it is removed."""
    deadline = time.monotonic() + timeout
    while uge_site.pins() and time.monotonic() < deadline:
        time.sleep(0.1)


def _values(out: str) -> dict:
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_a_job_sees_the_gpu_nodes_library_and_tool(uge_site, uge_user, gpu_site, real_tree):
    c = uge_site.cluster
    with gpulib.gpu_nodes():
        job = c.qsub(PROBE.format(payload=f"/local{gpu_site}/payload/gpu-payload"), "-l", "chos=gpu",
                     user=uge_user.pw_name, cwd=uge_user.pw_dir)
        acct = c.wait(job)
        _released(uge_site)
    out = c.output(job)
    assert (acct.exit_status, acct.failed) == (0, 0), (acct.fields, out, uge_site.admin_log.read_text()[-2000:])
    got = _values(out)
    assert (got.get("CHOS"), got.get("NODES"), got.get("WRITE")) == ("gpu", "chr", "ok"), out
    assert got.get("SMI") == "NVIDIA-SMI stand-in", out           # /.envsched/gpu/bin first in PATH
    assert got["LDP"].split(":")[0] == "/.envsched/gpu/lib", out    # after the tree's /etc/profile too
    assert "libnvidia-ml.so.1" in got["LIBS"].split(), out          # bound under its soname
    assert (got.get("LINKED"), got.get("DLOPEN")) == (str(MARKER), str(MARKER)), out   # DT_NEEDED and dlopen
    assert not (real_tree / ".envsched").exists()


def test_no_gpu_on_the_node(uge_site, uge_user, gpu_site):
    """No /dev/nvidia<N> (the stand-ins are not made): `gpu` is refused in one line before the
    payload runs; `gpu-opt` runs, built without the GPU."""
    c = uge_site.cluster
    marker = Path(uge_user.pw_dir) / "gpu-job-ran"
    marker.unlink(missing_ok=True)
    job = c.qsub(f"#!/bin/sh\ntouch {marker}\n", "-l", "chos=gpu", user=uge_user.pw_name, cwd=uge_user.pw_dir)
    acct = c.wait(job)
    out = c.output(job)
    assert not marker.exists()
    assert acct.exit_status == 69, (acct.fields, out)                # EnvironmentBroken (DevicesMissing)
    assert out.splitlines() == ["envsched: environment gpu needs a GPU and this node has none"], out
    job = c.qsub('#!/bin/sh\necho "CHOS=$CHOS"\ntest -e /.envsched && echo "GPU=yes" || echo "GPU=no"\n'
                 'echo "LDP=$LD_LIBRARY_PATH"\n', "-l", "chos=gpu-opt", user=uge_user.pw_name, cwd=uge_user.pw_dir)
    acct = c.wait(job)
    out = c.output(job)
    assert (acct.exit_status, acct.failed) == (0, 0), (acct.fields, out)
    got = _values(out)
    assert (got.get("CHOS"), got.get("GPU")) == ("gpu-opt", "no"), out   # no /.envsched in the view
    assert "/.envsched" not in got.get("LDP", ""), out
