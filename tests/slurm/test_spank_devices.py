"""GPUs through the real Slurm plugin (#12): every task of a two-node step sees the node's GPU
device nodes and the driver's library and tool (stand-ins: gpulib), in a real Debian tree,
without the tree being touched; a job whose environment needs a GPU on a node without one is
refused in one line. The two-node step runs on the virtual cluster (`vsite`, `vgpu_site`): the nodes
share the host's /dev (the stand-in device nodes), each its own view and run_dir."""
from __future__ import annotations

import glob
import shutil
from contextlib import contextmanager

import pytest

import gpulib
from gpulib import MARKER, gpu_environments
from spanksite import policy_text

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("views_released")]


@contextmanager
def _gpu_site(site, real_tree):
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
    try:
        yield driver
    finally:
        site.policy.write_text(original)
        shutil.rmtree(driver)


@pytest.fixture(scope="module")
def gpu_site(site, real_tree):
    """The stand-in driver under the cluster's root-owned directory, its payload in a place every
    view shows (/local, the host's root), and the policy with `gpu` (needs a GPU) and `gpu-opt`."""
    with _gpu_site(site, real_tree) as driver:
        yield driver


@pytest.fixture(scope="module")
def vgpu_site(vsite, real_tree):
    """The same on the virtual cluster."""
    with _gpu_site(vsite, real_tree) as driver:
        yield driver


def test_every_task_on_two_nodes_sees_the_gpu(vsite, slurm_user, home, vgpu_site, real_tree):
    with gpulib.gpu_nodes():
        r = vsite.cluster.srun("-N2", "-n2", "--chos=gpu", "sh", "-c",
                               f'echo "$SLURMD_NODENAME $(hostname) $(ls /dev/nvidia0) $(nvidia-smi) '
                               f'$(/local{vgpu_site}/payload/gpu-payload | tr "\\n" " ")"',
                               user=slurm_user.pw_name)
    assert r.returncode == 0, r.stderr
    rows = sorted(r.stdout.splitlines())
    assert len(rows) == 2 and len({row.split()[0] for row in rows}) == 2, rows
    for row in rows:
        node, host, rest = row.split(None, 2)
        assert node == host and node in vsite.cluster.nodes, rows
        assert rest.strip() == f"/dev/nvidia0 NVIDIA-SMI stand-in LINKED={MARKER} DLOPEN={MARKER}", rows
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
