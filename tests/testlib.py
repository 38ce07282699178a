"""Helpers shared by the test suites (fixtures live in the conftest.py files)."""
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

# ENVSCHED_TEST_USER_SUFFIX: appended to every test user's name, so that test runs started side by
# side on one host (engineers, helpers) do not create and remove each other's users
USER_SUFFIX = os.environ.get("ENVSCHED_TEST_USER_SUFFIX", "")
TEST_USER = "envsched-tu" + USER_SUFFIX
CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"


# This test session's directories under /run carry SESSION_TAG; those of other sessions running at
# the same time on this host (another engineer's test run) are not ours to judge.
SESSION_TAG = uuid.uuid4().hex[:8]
SESSION_DIR_PREFIXES = ("/run/envsched-tests-", "/run/envsched-slurmtest-", "/run/envsched-ugetest-")


def _ours(mount_point: str) -> bool:
    for prefix in SESSION_DIR_PREFIXES:
        if mount_point.startswith(prefix):
            return mount_point.startswith(prefix + SESSION_TAG)
    return True


HOLDERS = "/.images/"     # <run_dir>/.images/<hex>: a node's one mount of each image (holders.py)


def mount_table() -> List[str]:
    """The host mount table, without the per-mount ids that a remount may renumber, without
    other test sessions' directories, and without image holders: the node's one mount of each
    image, kept on purpose after the jobs that used it (site.image_hold), released by the
    fixtures that made them (release_holders)."""
    with open("/proc/self/mountinfo") as f:
        return sorted(" ".join(line.split()[2:]) for line in f
                      if _ours(line.split()[4]) and HOLDERS not in line.split()[4])


def namespace_inits(marker: str = "") -> List[str]:
    """This session's PID namespace inits still running: processes that are pid 1 of a namespace
    of their own (NSpid "HOST 1") with a resolver's command line naming one of this session's
    directories, or containing `marker` (a test cluster's directory) (isolation.py: the view's
    builder stays as the init until release)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                nspid = next((line.split()[1:] for line in f if line.startswith("NSpid:")), [])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        ours = (any(marker in a for a in argv) if marker else
                any(a.startswith(p + SESSION_TAG) for a in argv for p in SESSION_DIR_PREFIXES))
        if len(nspid) >= 2 and nspid[-1] == "1" and "prepare" in argv and ours:
            out.append(" ".join(argv).strip())
    return sorted(out)


def unmount_below(path: str) -> None:
    """Lazily unmount everything mounted below `path` (image holders, pins), deepest first."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(path.rstrip("/") + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL)


def wait_for(cond: Callable[[], object], failure: Callable[[], str], timeout: float, every: float = 0.1):
    """cond()'s first true value, polled every `every` seconds; AssertionError(failure()) after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(failure())
        time.sleep(every)


def two_tree_policy(root: Path, run_dir: Path, trees: Dict[str, Path], site_extra: str = "",
                    environments_extra: str = "") -> Path:
    """root/policy.toml (0644): default deb12, `run_dir`, log_file root/envsched.log (then the
    `site_extra` lines), environments deb12 and deb13 from `trees` (then `environments_extra`)."""
    policy = root / "policy.toml"
    policy.write_text(f"""
[site]
default = "deb12"
run_dir = "{run_dir}"
log_file = "{root}/envsched.log"
{site_extra}
[environments.deb12]
path = "{trees['deb12']}"
[environments.deb13]
path = "{trees['deb13']}"
{environments_extra}""")
    policy.chmod(0o644)
    return policy


@contextlib.contextmanager
def hung_home(pw: pwd.struct_passwd, work: Path, chos: str, let_go: Callable[[], object] = lambda: None):
    """The user's home directory a FUSE mount (squashfuse of a squashfs holding their ~/.chos,
    entry and attribute caches off), served until `stop()` SIGSTOPs its daemon: from then on every
    lookup, stat and open below it waits for an answer that never comes. Afterwards (a failed test
    too) the daemon is let go on (SIGCONT), the mount taken down, `let_go()` run (a view built
    meanwhile holds its own copy of the mount: `envsched gc --idle-views`) and the daemon gone.
    (The PAM and the Slurm faults' hung-home cases.)"""
    work.mkdir(mode=0o700, exist_ok=True)
    src, img = work / "src", work / "home.sqfs"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(mode=0o755)
    (src / ".chos").write_text(chos + "\n")
    subprocess.run(["mksquashfs", str(src), str(img), "-force-uid", str(pw.pw_uid), "-force-gid", str(pw.pw_gid),
                    "-noappend", "-quiet", "-no-progress"], check=True, stdout=subprocess.DEVNULL)
    daemon = subprocess.Popen(["squashfuse", "-f", "-o", "allow_other,entry_timeout=0,attr_timeout=0,negative_timeout=0",
                               str(img), pw.pw_dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not any(f" {pw.pw_dir} " in line and "fuse" in line for line in mount_table()):
            assert daemon.poll() is None and time.monotonic() < deadline, "squashfuse did not mount"
            time.sleep(0.05)
        yield lambda: daemon.send_signal(signal.SIGSTOP)
    finally:
        daemon.send_signal(signal.SIGCONT)
        for _ in range(50):
            if subprocess.run(["fusermount", "-u", pw.pw_dir], stderr=subprocess.DEVNULL).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", pw.pw_dir], stderr=subprocess.DEVNULL)
        let_go()
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def real_user(name: str) -> Iterator[pwd.struct_passwd]:
    """An ordinary user with a home directory: created if missing, removed again if we made it."""
    created = False
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", "--user-group", name], check=True)
        created = True
        pw = pwd.getpwnam(name)
    try:
        yield pw
    finally:
        if created:
            subprocess.run(["userdel", "--remove", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def client_command(argv: Sequence[str], base_env: Dict[str, str], root_cwd: str, user: Optional[str] = None,
                   cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None
                   ) -> Tuple[List[str], Dict[str, str], str]:
    """(argv, environment, cwd) of a client command as root or, through setpriv, as `user`
    (HOME/USER/LOGNAME set, cwd defaulting to their home; root's to `root_cwd`)."""
    e = dict(base_env)
    cmd = list(argv)
    if user is not None:
        pw = pwd.getpwnam(user)
        e.update(HOME=pw.pw_dir, USER=user, LOGNAME=user)
        cmd = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--"] + cmd
        wd = cwd or pw.pw_dir
    else:
        e.update(HOME="/root", USER="root", LOGNAME="root")
        wd = cwd or root_cwd
    e.update(env or {})
    return cmd, e, wd


def run_client(argv: Sequence[str], base_env: Dict[str, str], root_cwd: str, user: Optional[str] = None,
               cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None, timeout: float = 60,
               stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    """A scheduler client command as root or, through setpriv, as `user` (HOME/USER/LOGNAME set,
    cwd defaulting to their home). stdin is empty unless given, so nothing waits for a terminal."""
    cmd, e, wd = client_command(argv, base_env, root_cwd, user, cwd, env)
    return subprocess.run(cmd, cwd=wd, env=e, input=stdin if stdin is not None else "",
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)


def run_script(argv: Sequence[str], timeout: float) -> str:
    """A cluster script with a clean environment; its output, or RuntimeError with the output."""
    p = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL,
                       env={"PATH": CLEAN_PATH, "LANG": "C.UTF-8"})
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stdout}")
    return p.stdout


@contextlib.contextmanager
def throwaway_cluster(scripts: Path, name: str, subdirs: Sequence[str], start_args: Sequence[str] = (),
                      keep_var: str = "") -> Iterator[Tuple[Path, float]]:
    """install.sh, then start.sh into a fresh root-owned directory outside /tmp (a policy kept
    there sits in a trusted path chain); yields (dir, seconds to ready); stop.sh and removal at
    the end (the directory is kept when the environment variable `keep_var` is 1)."""
    run_script([str(scripts / "install.sh")], timeout=900)
    root = Path(f"/var/lib/envsched-{name}-test-{uuid.uuid4().hex[:8]}")
    root.mkdir(mode=0o755)
    os.chown(root, 0, 0)
    root.chmod(0o755)
    for sub in subdirs:
        (root / sub).mkdir(mode=0o755)
    try:
        out = run_script([str(scripts / "start.sh"), str(root), *start_args], timeout=120)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    print(out.strip())
    ready = float(out.rsplit("ready in ", 1)[1].split("s", 1)[0])
    try:
        yield root, ready
    finally:
        stop = subprocess.run([str(scripts / "stop.sh"), str(root)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=120)
        if stop.returncode == 0 and os.environ.get(keep_var) != "1":
            shutil.rmtree(root, ignore_errors=True)
        if stop.returncode != 0:
            raise RuntimeError(f"stop.sh {root} failed:\n{stop.stdout}")


def build_mini_trees(os_dir: Path) -> Dict[str, Path]:
    """deb12 and deb13 busybox trees (tests/envs/build-mini-env.sh) under os_dir, for the scheduler
    sites; PRETTY_NAME "Debian 12 (mini)" / "Debian 13 (mini)"."""
    os_dir.mkdir(mode=0o755, exist_ok=True)
    trees = {}
    for name, version in (("deb12", "12"), ("deb13", "13")):
        trees[name] = os_dir / name
        subprocess.run([str(Path(__file__).resolve().parent / "envs" / "build-mini-env.sh"), str(trees[name]),
                        "debian", version, f"Debian {version} (mini)"], check=True, stdout=subprocess.DEVNULL)
    return trees


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_tool(tool: str, args: Sequence[str], user: Optional[str] = None, cwd: Optional[str] = None,
             env: Optional[Dict[str, str]] = None, stdin: Optional[str] = None, timeout: float = 60) -> Result:
    """Run `envsched`/`chos` from this checkout (or as installed, see tests/installed.py), as root or
    (via setpriv) as `user`."""
    import installed
    cmd = [*installed.tool_command(tool), *args]
    base = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}
    if user is not None:
        pw = pwd.getpwnam(user)
        base.update(HOME=pw.pw_dir, USER=user, LOGNAME=user)
        cmd = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--"] + cmd
    base.update(env or {})
    if installed.src():
        base["PYTHONPATH"] = installed.src()
    p = subprocess.run(cmd, cwd=cwd or "/", env=base, input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    return Result(p.returncode, p.stdout, p.stderr)


def payload_lines(text: str) -> Dict[str, str]:
    """The KEY=VALUE lines a payload printed (upper-case keys; values unquoted)."""
    import re
    out = {}
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq and re.fullmatch(r"[A-Z_]+", key):
            out[key] = value.strip('"')
    return out


RECORDING_HOOK = """#!/bin/sh
# a stand-in node hook (McKernel's boot and shutdown): one file per run, what it was given
echo "$ENVSCHED_HOOK $ENVSCHED_KEY $ENVSCHED_JOB $ENVSCHED_USER cpus=$ENVSCHED_CPUS" > {dir}/$ENVSCHED_HOOK-$ENVSCHED_KEY-$$
exit {code}
"""


def recording_hooks(top: Path, exits: Dict[str, int]) -> Path:
    """Scripts `top`/NAME exiting with `exits`[NAME], each recording its run as a file in
    `top`/records ("HOOK KEY JOB USER cpus=LIST"); returns the records directory."""
    records = top / "records"
    top.mkdir(mode=0o755)
    records.mkdir(mode=0o755)
    for name, code in exits.items():
        (top / name).write_text(RECORDING_HOOK.format(dir=records, code=code))
        (top / name).chmod(0o755)
    return records


LAUNCHER = """#!/bin/sh
# a stand-in for an environment's launcher (McKernel's mcexec): records what it was given, its pid
# and whether it runs in the view (the tree's own marker file), then runs the rest of its argv
tag=
case "$1" in --rec-tag=*) tag=${1#--rec-tag=}; shift ;; esac
{
  echo "pid=$$"
  echo "tag=$tag"
  echo "view=$(cat /etc/envsched-mini-release 2>/dev/null || echo not-in-the-view)"
  echo "uid=$(id -u)"
  for a in "$@"; do printf 'arg=%s\\n' "$a"; done
} > {records}/launch-$$.tmp && mv {records}/launch-$$.tmp {records}/launch-$$
exec "$@"
"""


def hook_environments(tree: Path, top: Path) -> str:
    """Policy text: `mck` boots and shuts down with recording_hooks' `boot` and `shutdown`,
    `mck-broken` with a prolog that fails (`broken-boot`, exit 7)."""
    return f"""
[environments.mck]
path = "{tree}"
node_prolog = ["{top}/boot"]
node_epilog = ["{top}/shutdown"]
[environments.mck-broken]
path = "{tree}"
node_prolog = ["{top}/broken-boot"]
node_epilog = ["{top}/shutdown"]
"""


def launcher_tree(dest: Path, records: Path) -> Path:
    """A busybox tree (tests/envs/build-mini-env.sh, marker /etc/envsched-mini-release "launch 12")
    with a recording launcher /opt/launch/rec (LAUNCHER) and /opt/launch/broken, executable but not
    runnable (its interpreter is missing: exec fails with ENOENT). `records` (made here, mode 1777)
    gets one file launch-PID per run; it must be visible in the view (below /tmp or /home)."""
    subprocess.run([str(Path(__file__).resolve().parent / "envs" / "build-mini-env.sh"), str(dest), "launch", "12",
                    "launch 12 (mini)"], check=True, stdout=subprocess.DEVNULL)
    records.mkdir(mode=0o755, exist_ok=True)
    records.chmod(0o1777)
    top = dest / "opt" / "launch"
    top.mkdir(mode=0o755)
    (top / "rec").write_text(LAUNCHER.replace("{records}", str(records)))
    (top / "broken").write_text("#!/nonexistent/interpreter\n")
    for name in ("rec", "broken"):
        (top / name).chmod(0o755)
    return dest


def launcher_environments(tree: Path, broken: str = '"/opt/launch/broken"') -> str:
    """Policy text: `mck` runs through the recording launcher (an argument with a space), `missing`
    names a launcher the tree lacks, `broken` one that cannot run."""
    return f"""
[environments.mck]
path = "{tree}"
launcher = ["/opt/launch/rec", "--rec-tag=mck one"]
[environments.missing]
path = "{tree}"
launcher = ["/opt/launch/missing"]
[environments.broken]
path = "{tree}"
launcher = [{broken}]
"""


def cleared(records: Path) -> Path:
    """`records` emptied (the recording launcher's files of earlier tests)."""
    for p in records.iterdir():
        p.unlink()
    return records


def launch_records(records: Path) -> List[Dict[str, object]]:
    """What the recording launcher wrote, one dict a run (pid, tag, view, uid; args: a list), by pid."""
    out = []
    for p in sorted(records.glob("launch-[0-9]*")):
        rec: Dict[str, object] = {"args": []}
        for line in p.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "arg":
                rec["args"].append(value)            # type: ignore[union-attr]
            else:
                rec[key] = value
        out.append(rec)
    return sorted(out, key=lambda r: int(str(r["pid"])))


def interleaved(cases: Dict[str, Callable[[], float]], rounds: int, warmup: int = 1,
                seed: Optional[int] = None) -> Dict[str, List[float]]:
    """The benchmarks' rounds (bench_*.py): `warmup` rounds not kept, then `rounds` in which every
    case runs once, in an order shuffled each round (seed: BENCH_SEED, else 1); each case's times."""
    import random
    rng = random.Random(int(os.environ.get("BENCH_SEED", "1")) if seed is None else seed)
    times: Dict[str, List[float]] = {k: [] for k in cases}
    for r in range(warmup + rounds):
        order = list(cases)
        rng.shuffle(order)
        for k in order:
            t = cases[k]()
            if r >= warmup:
                times[k].append(t)
    return times
