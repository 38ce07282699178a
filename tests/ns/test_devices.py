"""GPUs and devices (#12): the node's device nodes and GPU driver files in a view.

Real views, real payloads. The GPU is a stand-in: character devices with /dev/null's numbers
named /dev/nvidia0 and /dev/nvidiactl (made here, removed afterwards; skipped on a host with a
real NVIDIA driver), a libnvidia-ml.so built here with gcc, a shell script as nvidia-smi. The
payload is a program linked against the stand-in library (found through LD_LIBRARY_PATH) that
also dlopen()s it, run in the real Debian tree.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import gpulib
from gpulib import MARKER
from testlib import TEST_USER

pytestmark = pytest.mark.ns

EXTRA = ("/dev/envsched-test-uverbs0", "/dev/envsched-test-uverbs1")


@pytest.fixture(scope="module")
def driver(site_dir):
    """The stand-in driver (gpulib.build_driver) in root's directories."""
    if not shutil.which("gcc"):
        pytest.skip("needs gcc")
    top = site_dir.root / "gpu"
    gpulib.build_driver(top)
    yield top
    shutil.rmtree(top)


@pytest.fixture
def gpu_nodes():
    """/dev/nvidia0, /dev/nvidiactl and two extra devices: /dev/null's numbers, mode 0666."""
    if glob.glob("/dev/nvidia*"):
        pytest.skip("this host has a real NVIDIA driver: the stand-ins would shadow it")
    with gpulib.gpu_nodes(EXTRA):
        yield


def _policy(site_dir, driver, real_tree, env_keys="", shared='["/proc", "/sys", "/tmp", "/home"]', name="gpu"):
    return site_dir.policy(f"""
[environments.{name}]
path = "{real_tree}"
gpus = "nvidia"
{env_keys}
""", site=f"""shared = {shared}
gpu_libraries = "{driver}/nvliblist.conf"
gpu_search_dirs = ["{driver}/lib", "{driver}/bin"]
""", name="policy-gpu.toml")


def _exec(envsched_cmd, policy, env, script):
    return envsched_cmd("--policy", str(policy), "exec", "--user", TEST_USER, "--no-user-file", "--request", env,
                        "--", "/bin/sh", "-c", script)


def test_gpu_view_has_the_nodes_the_library_and_the_tool(envsched_cmd, site_dir, driver, real_tree, gpu_nodes,
                                                         test_user):
    """/dev not shared: only the GPU nodes and the listed devices are bound, and usable (not nodev);
    the library is found by the loader (DT_NEEDED and dlopen) and the tool on PATH."""
    policy = _policy(site_dir, driver, real_tree, 'devices = ["/dev/null", "/dev/envsched-test-uverbs*"]')
    r = _exec(envsched_cmd, policy, "gpu",
              f"ls /dev | tr '\\n' ' '; echo; echo x > /dev/nvidia0 && echo write=ok; nvidia-smi; "
              f"/local{driver}/payload/gpu-payload; echo LDP=$LD_LIBRARY_PATH; ls /.envsched/gpu/lib; "
              f"touch /.envsched/gpu/lib/x 2>/dev/null; echo touch=$?; readlink -f /.envsched/gpu/bin/nvidia-smi")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["envsched-test-uverbs0", "envsched-test-uverbs1", "null", "nvidia0", "nvidiactl"]
    assert lines[1:4] == ["write=ok", "NVIDIA-SMI stand-in", f"LINKED={MARKER}"]
    assert lines[4] == f"DLOPEN={MARKER}"
    assert lines[5].startswith("LDP=/.envsched/gpu/lib")
    assert lines[6:] == ["libnvidia-ml.so.1", "touch=1", "/.envsched/gpu/bin/nvidia-smi"]
    assert not (real_tree / ".envsched").exists()                  # the tree is never written
    log = (site_dir.root / "envsched.log").read_text().splitlines()
    assert any("event=devices" in line and "libcuda.so" in line for line in log[-3:])   # missing: logged


def test_login_shell_keeps_the_driver_paths(envsched_cmd, site_dir, driver, real_tree, gpu_nodes):
    """Debian's /etc/profile resets PATH; the login shells' snippet puts the driver's tools back."""
    policy = _policy(site_dir, driver, real_tree)
    r = _exec(envsched_cmd, policy, "gpu", "exec /bin/sh -l -c 'nvidia-smi; echo $PATH'")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "NVIDIA-SMI stand-in"
    assert r.stdout.splitlines()[1].startswith("/.envsched/gpu/bin:")


def test_shared_dev_needs_no_device_binds(envsched_cmd, site_dir, driver, real_tree, gpu_nodes):
    policy = _policy(site_dir, driver, real_tree, shared='["/proc", "/dev", "/sys", "/tmp", "/home"]')
    r = envsched_cmd("--policy", str(policy), "explain", "--user", TEST_USER, "--no-user-file",
                     "--request", "gpu", "--json")
    assert r.returncode == 0, r.stderr
    ops = json.loads(r.stdout)["plan"]["ops"]
    assert not [op for op in ops if op["op"] == "device"]
    files = {op["target"]: op["source"] for op in ops if op["op"] == "driver_file"}
    assert files == {"/.envsched/gpu/lib/libnvidia-ml.so.1": f"{driver}/lib/libnvidia-ml.so.999.1",
                     "/.envsched/gpu/bin/nvidia-smi": f"{driver}/bin/nvidia-smi"}
    r = _exec(envsched_cmd, policy, "gpu", "ls -l /dev/nvidia0 | cut -c1; nvidia-smi")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["c", "NVIDIA-SMI stand-in"]


def test_no_gpu_on_the_node(envsched_cmd, site_dir, driver, real_tree):
    if glob.glob("/dev/nvidia[0-9]*"):
        pytest.skip("this host has a GPU")
    policy = _policy(site_dir, driver, real_tree)
    r = _exec(envsched_cmd, policy, "gpu", "echo ran")
    assert r.returncode == 69
    assert r.stderr.splitlines() == ["envsched: environment gpu needs a GPU and this node has none"]
    assert r.stdout == ""
    policy = _policy(site_dir, driver, real_tree, "gpus_required = false")
    r = _exec(envsched_cmd, policy, "gpu", "echo ran; ls -d /.envsched 2>&1 | wc -l; echo LDP=$LD_LIBRARY_PATH")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["ran", "1", "LDP="]
    log = (site_dir.root / "envsched.log").read_text().splitlines()
    assert "no GPU on this node: the view is built without (gpus_required = false)" in log[-2]


@pytest.mark.parametrize("how", ["group-writable", "users-file", "users-symlink-target"])
def test_forged_gpu_library_is_refused(envsched_cmd, site_dir, driver, real_tree, gpu_nodes, test_user, how):
    """A library every GPU job would load, writable by a user (or theirs): no job starts."""
    lib = driver / "lib" / "libnvidia-ml.so.999.1"
    planted = None
    if how == "group-writable":
        lib.chmod(0o664)
    elif how == "users-file":
        os.chown(lib, test_user.pw_uid, -1)
    else:                                      # the soname points at a file in a user-writable directory
        planted = Path(test_user.pw_dir) / "libnvidia-ml.so.999.1"
        shutil.copy2(lib, planted)
        (driver / "lib" / "libnvidia-ml.so.1").unlink()
        (driver / "lib" / "libnvidia-ml.so.1").symlink_to(planted)
    try:
        r = _exec(envsched_cmd, _policy(site_dir, driver, real_tree), "gpu", "echo ran")
    finally:
        lib.chmod(0o755)
        os.chown(lib, 0, 0)
        if planted is not None:
            (driver / "lib" / "libnvidia-ml.so.1").unlink()
            (driver / "lib" / "libnvidia-ml.so.1").symlink_to("libnvidia-ml.so.999.1")
            planted.unlink()
    assert r.returncode == 69, r.stderr
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and "GPU driver or devices cannot be used" in r.stderr
    log = (site_dir.root / "envsched.log").read_text().splitlines()
    assert "event=broken" in log[-1] and "libnvidia-ml.so" in log[-1]


def test_forged_device_node_is_refused(envsched_cmd, site_dir, driver, real_tree, gpu_nodes, test_user):
    os.chown("/dev/envsched-test-uverbs1", test_user.pw_uid, -1)
    policy = _policy(site_dir, driver, real_tree, 'devices = ["/dev/envsched-test-uverbs*"]')
    r = _exec(envsched_cmd, policy, "gpu", "echo ran")
    assert r.returncode == 69 and r.stdout == ""
    assert "device /dev/envsched-test-uverbs1 is owned by uid" in (site_dir.root / "envsched.log").read_text()
