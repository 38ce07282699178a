"""GPUs and devices (#12), without namespaces: the keys, the site's list, the loader's cache as
this host has it, the search and its refusals, and the plan operations."""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys

import pytest

try:
    import envsched  # noqa: F401
except ImportError:  # run from a checkout without installing: tests/unit -> src
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "src"))

from envsched import devices
from envsched.errors import PolicyError
from envsched.identity import UserInfo
from envsched.plan import build_plan
from envsched.policy.load import parse_policy_text
from envsched.policy.model import HostDevices

ALICE = UserInfo(name="alice", uid=1000, gid=1000, gids=(1000,), groups=("alice",), home="/home/alice",
                 shell="/bin/sh")
BASE = '[environments.cuda]\npath = "/os/cuda"\n'


def parse(text: str):
    return parse_policy_text(text, "policy.toml")


def test_keys_and_defaults():
    p = parse(BASE)
    env, site = p.get("cuda"), p.site
    assert (env.gpus, env.gpus_required, env.devices, env.host_devices) == ("", True, (), None)
    assert (site.gpu_libraries, site.gpu_search_dirs) == ("/etc/envsched/nvliblist.conf", ())
    p = parse('[site]\ngpu_libraries = "/etc/site/nv.conf"\ngpu_search_dirs = ["/opt/nv/lib"]\n' + BASE
              + 'gpus = "nvidia"\ngpus_required = false\ndevices = ["/dev/infiniband/uverbs*"]\n')
    assert (p.get("cuda").gpus, p.get("cuda").gpus_required) == ("nvidia", False)
    assert p.get("cuda").devices == ("/dev/infiniband/uverbs*",)
    assert p.site.gpu_search_dirs == ("/opt/nv/lib",)


@pytest.mark.parametrize("extra, message", [
    ('gpus = "amd"', "policy.toml:3: environments.cuda.gpus: must be one of , nvidia: 'amd'"),
    ('gpus_required = "yes"', "policy.toml:3: environments.cuda.gpus_required: must be true or false: 'yes'"),
    ('devices = ["/etc/passwd"]', "policy.toml:3: environments.cuda.devices[0]: must be a device path under "
                                  "/dev (globs allowed: /dev/infiniband/uverbs*): '/etc/passwd'"),
    ('devices = ["/dev/../etc/shadow"]', "policy.toml:3: environments.cuda.devices[0]: must not contain '.' or "
                                         "'..' components: '/dev/../etc/shadow'"),
    ('devices = ["nvidia0"]', "policy.toml:3: environments.cuda.devices[0]: not an absolute path: 'nvidia0'"),
])
def test_refusals(extra, message):
    with pytest.raises(PolicyError) as e:
        parse(BASE + extra + "\n")
    assert str(e.value) == message


def test_site_key_refusals():
    with pytest.raises(PolicyError, match=r"site.gpu_libraries: not an absolute path"):
        parse('[site]\ngpu_libraries = "nvliblist.conf"\n')
    with pytest.raises(PolicyError, match=r"site.gpu_search_dirs\[1\]: duplicate entry"):
        parse('[site]\ngpu_search_dirs = ["/a", "/a"]\n')


def test_parse_list():
    libs, tools, problems = devices.parse_list(
        "# comment\nnvidia-smi\n  libcuda.so  # driver\n\nlibcuda.so\nlibEGL_nvidia.so\n../evil.so\na b\n")
    assert libs == ["libcuda.so", "libEGL_nvidia.so"]
    assert tools == ["nvidia-smi"]
    assert problems == ["line 7: not a file name: '../evil.so'", "line 8: not a file name: 'a b'"]


def test_shipped_list_parses():
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "site-config", "nvliblist.conf")).read()
    libs, tools, problems = devices.parse_list(text)
    assert not problems and "libcuda.so" in libs and "libnvidia-ml.so" in libs and "nvidia-smi" in tools


@pytest.mark.skipif(not shutil.which("ldconfig") and not os.path.exists("/sbin/ldconfig"), reason="no ldconfig")
def test_ld_cache_matches_ldconfig_on_this_host():
    """The Python reading of /etc/ld.so.cache is what `ldconfig -p` prints for this architecture."""
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/sbin:/sbin:/usr/bin:/bin"}).stdout.splitlines()[1:]
    machine = {"x86_64": "x86-64", "aarch64": "AArch64"}.get(os.uname().machine)
    if machine is None:
        pytest.skip("architecture label not known to this test")
    expected = [(line.split()[0], line.split(" => ")[1]) for line in out if machine in line]
    assert devices.ld_cache() == expected and expected
    assert any(name == "libc.so.6" for name, _ in expected)


def test_ld_cache_garbage_is_empty():
    assert devices.parse_ld_cache(b"", 0x303) == []
    assert devices.parse_ld_cache(b"glibc-ld.so.cache1.1" + b"\xff" * 40, 0x303) == []
    assert devices.parse_ld_cache(b"not a cache at all" * 10, None) == []


def test_ld_cache_by_stems_is_the_whole_cache_filtered():
    """The per-job reading (only the wanted stems, compared before decoding) is the full reading
    filtered, on this host's cache and on damaged copies of it."""
    import random
    try:
        with open(devices.LD_CACHE, "rb") as f:
            data = f.read()
    except OSError:
        pytest.skip("no loader cache")
    arch = devices.ARCH_FLAGS.get(os.uname().machine)
    rnd = random.Random(12)
    for n in range(60):
        d = bytearray(data)
        for _ in range(n and rnd.randrange(1, 40)):
            d[rnd.randrange(len(d))] = rnd.randrange(256)
        full = devices.parse_ld_cache(bytes(d), arch)
        for stems in ({"libc.so", "libm.so"}, {"libz.so", "libc"}, {"lib\ufffd.so", "libc.so"}):
            assert devices.parse_ld_cache(bytes(d), arch, stems) == [
                (name, path) for name, path in full if devices._stem(name) in stems], n


def test_paths_resolve_as_realpath(tmp_path):
    """The trust checks' own link following gives os.path.realpath's answer (soname links, links
    out of the directory, dangling links, loops)."""
    (tmp_path / "other").mkdir()
    (tmp_path / "libx.so.1.0").write_bytes(b"")
    (tmp_path / "other" / "liby.so.2").write_bytes(b"")
    for link, target in (("libx.so.1", "libx.so.1.0"), ("libx.so", "libx.so.1"), ("liby.so.2", "other/liby.so.2"),
                         ("liby.so", str(tmp_path / "other" / "liby.so.2")), ("libd.so.1", "gone.so"),
                         ("libl.so.1", "libl.so.2"), ("libl.so.2", "libl.so.1")):
        (tmp_path / link).symlink_to(target)
    (tmp_path / "dirlink").symlink_to("other")
    trust = devices._Trust()
    for p in ["libx.so.1.0", "libx.so.1", "libx.so", "liby.so.2", "liby.so", "libd.so.1", "libl.so.1", "missing",
              "dirlink/liby.so.2", "other/../libx.so", "other/", "."]:
        path = f"{tmp_path}/{p}"
        is_link, real, _st, _err = trust.resolve(path)
        assert (is_link, real) == (os.path.islink(path), os.path.realpath(path)), p


def test_matching_rule():
    assert devices._matches("libcuda.so.1", "libcuda.so") and devices._matches("libcuda.so", "libcuda.so")
    assert not devices._matches("libcudart.so.12", "libcuda.so")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own the files")
def test_driver_files_found_checked_and_named():
    import tempfile
    from pathlib import Path
    top = Path(tempfile.mkdtemp(prefix="envsched-unit-gpu-", dir="/run"))    # root's, not writable by others
    try:
        _driver_files_in(top)
    finally:
        shutil.rmtree(top)


def _driver_files_in(top):
    top.chmod(0o755)
    (top / "libnvidia-ml.so.999").write_bytes(b"\x7fELF")
    (top / "libnvidia-ml.so.1").symlink_to("libnvidia-ml.so.999")
    (top / "nvidia-smi").write_text("#!/bin/sh\n")
    listing = top / "list.conf"
    listing.write_text("libnvidia-ml.so\nnvidia-smi\nlibnot-here.so\n")
    for p in (top / "libnvidia-ml.so.999", top / "nvidia-smi", listing):
        p.chmod(0o644)
    p = parse(f'[site]\ngpu_libraries = "{listing}"\ngpu_search_dirs = ["{top}"]\n')
    problems, missing = [], []
    files = devices.driver_files(p.site, problems, missing)
    assert not problems, problems
    real = str(top / "libnvidia-ml.so.999")
    assert sorted(files) == sorted([(real, "/.envsched/gpu/lib/libnvidia-ml.so.1"),
                                    (str(top / "nvidia-smi"), "/.envsched/gpu/bin/nvidia-smi")])
    assert missing == ["libnot-here.so"]
    (top / "nvidia-smi").chmod(0o664)
    problems = []
    devices.driver_files(p.site, problems, [])
    assert problems == [f"{top}/nvidia-smi is writable by group or others (mode 0664)"]


def test_plan_ops_and_env():
    p = parse(BASE + 'gpus = "nvidia"\n')
    found = HostDevices(nodes=("/dev/nvidia0", "/dev/nvidiactl"),
                        files=(("/usr/lib/x86_64-linux-gnu/libcuda.so.535.1", "/.envsched/gpu/lib/libcuda.so.1"),
                               ("/usr/bin/nvidia-smi", "/.envsched/gpu/bin/nvidia-smi")))
    env = dataclasses.replace(p.get("cuda"), host_devices=found)
    plan = build_plan(p, "cuda", env, ALICE, "/home/alice")
    kinds = [op["op"] for op in plan.ops]
    assert "device" not in kinds                          # /dev is shared by default: already there
    files = [op for op in plan.ops if op["op"] == "driver_file"]
    assert files == [{"op": "driver_file", "source": "/usr/lib/x86_64-linux-gnu/libcuda.so.535.1",
                      "target": "/.envsched/gpu/lib/libcuda.so.1"},
                     {"op": "driver_file", "source": "/usr/bin/nvidia-smi", "target": "/.envsched/gpu/bin/nvidia-smi"}]
    assert kinds.index("driver_file") < kinds.index("pivot_root")
    envs = [(op["action"], op["name"], op["value"]) for op in plan.process_ops if op["op"] == "env"]
    assert envs[:2] == [("prepend", "LD_LIBRARY_PATH", "/.envsched/gpu/lib"), ("prepend", "PATH", "/.envsched/gpu/bin")]
    p2 = parse('[site]\nshared = ["/proc", "/tmp"]\n' + BASE + 'gpus = "nvidia"\n')
    plan = build_plan(p2, "cuda", dataclasses.replace(p2.get("cuda"), host_devices=found), ALICE, "/")
    assert [op for op in plan.ops if op["op"] == "device"] == [
        {"op": "device", "source": "/dev/nvidia0", "target": "/dev/nvidia0"},
        {"op": "device", "source": "/dev/nvidiactl", "target": "/dev/nvidiactl"}]
    plan = build_plan(p, "cuda", p.get("cuda"), ALICE, "/")
    assert not [op for op in plan.ops if op["op"] in ("device", "driver_file")]
    assert not [op for op in plan.ops if op["op"] == "env" and op["name"] == "LD_LIBRARY_PATH"]
