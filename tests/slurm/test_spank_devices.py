"""GPUs through the real Slurm plugin (#12): every task of a two-node step sees the node's GPU
device nodes and the driver's library and tool (stand-ins: gpulib), in a real Debian tree,
without the tree being touched; a job whose environment needs a GPU on a node without one is
refused in one line."""
from __future__ import annotations

import glob
import shutil

import pytest

import gpulib
from gpulib import MARKER, gpu_environments
from spanksite import policy_text

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("views_released")]


@pytest.fixture(scope="module")
def gpu_site(site, real_tree):
    """The stand-in driver under the cluster's root-owned directory, its payload in a place every
    view shows (/local, the host's root), and the policy with `gpu` (needs a GPU) and `gpu-opt`."""
    if not shutil.which("gcc"):
        pytest.skip("needs gcc")
    if glob.glob("/dev/nvidia*"):
        pytest.skip("this host has a real NVIDIA driver: the stand-ins would shadow it")
    root = site.cluster.dir
    driver = gpulib.build_driver(root / "gpu")
    original = site.policy.read_text()
    text = policy_text(root, site.run_dir, site.trees, extra_environments=gpu_environments(real_tree))
    site.policy.write_text(text.replace("[defaults]", f'gpu_libraries = "{driver}/nvliblist.conf"\n'
                                        f'gpu_search_dirs = ["{driver}/lib", "{driver}/bin"]\n\n[defaults]', 1))
    yield driver
    site.policy.write_text(original)
    shutil.rmtree(driver)


def test_every_task_on_two_nodes_sees_the_gpu(site, slurm_user, home, gpu_site, real_tree):
    with gpulib.gpu_nodes():
        r = site.cluster.srun("-N2", "-n2", "--chos=gpu", "sh", "-c",
                              f'echo "$SLURMD_NODENAME $(ls /dev/nvidia0) $(nvidia-smi) '
                              f'$(/local{gpu_site}/payload/gpu-payload | tr "\\n" " ")"',
                              user=slurm_user.pw_name)
    assert r.returncode == 0, r.stderr
    rows = sorted(r.stdout.splitlines())
    assert [row.split()[0] for row in rows] == ["node1", "node2"]
    for row in rows:
        assert row.split(None, 1)[1].strip() == f"/dev/nvidia0 NVIDIA-SMI stand-in LINKED={MARKER} DLOPEN={MARKER}", rows
    assert not (real_tree / ".envsched").exists()


def test_no_gpu_on_the_node(site, slurm_user, home, gpu_site):
    """No /dev/nvidia<N> (the stand-ins are not made): `gpu` is refused in one line, `gpu-opt` runs."""
    r = site.cluster.srun("--chos=gpu", "true", user=slurm_user.pw_name)
    assert r.returncode == 69, (r.stdout, r.stderr)
    assert [line for line in r.stderr.splitlines() if not line.startswith("srun: ")] == [
        "envsched: environment gpu needs a GPU and this node has none"]
    r = site.cluster.srun("--chos=gpu-opt", "sh", "-c", "echo $CHOS; ls /.envsched 2>&1 | wc -l",
                          user=slurm_user.pw_name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["gpu-opt", "1"]          # built without: no /.envsched in the view
