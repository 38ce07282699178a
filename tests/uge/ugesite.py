"""envsched installed in a throwaway Grid Engine cluster from `envsched site-config render --scheduler uge`,
section by section, the way docs/admin.md tells an admin to (used by the `uge_site` fixture and the benchmark)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import installed
from ugecluster import REPO, UgeCluster


@dataclass
class JsvSite:
    """The envsched site: its cluster, policy, JSV launcher and execution-side install."""
    cluster: UgeCluster
    policy: Path
    wrapper: Path            # the JSV launcher (global jsv_url, the cell's sge_request, usable with -jsv)
    log: Path                # protocol exchange of every JSV process
    trees: Dict[str, Path]
    baseline_qsub: List[float]   # seconds per qsub before envsched was configured
    libexec: Path = Path("/nonexistent")    # the plugin dir: JSV, shims, set-user-ID starter + conf
    rendered: str = ""                      # the whole render output the cluster was configured from
    run_dir: Path = Path("/nonexistent")    # the policy's run_dir (pins)
    admin_log: Path = Path("/nonexistent")  # the policy's log_file

    def pins(self) -> List[str]:
        try:
            # not .images: the node's one mount of each image, kept after its jobs on purpose;
            # not .decisions: the decision cache (files, no mounts); shared views each by name
            # (none left with the test policy's view_hold = 0)
            found = [p.name for p in self.run_dir.iterdir() if p.name not in (".images", ".decisions", ".views")]
            if (self.run_dir / ".views").is_dir():
                found += [f".views/{p.name}" for p in (self.run_dir / ".views").iterdir()]
            return sorted(found)
        except FileNotFoundError:
            return []


CHOS_COMPLEX = "chos chos STRING == YES NO NONE 0"
SITE_QUEUE = "all.q"             # batch: prolog + epilog + set-user-ID starter (qtype BATCH)
INTERACTIVE_QUEUE = "legacy.q"   # qrsh: starter only (SGE 8.1.9 fails builtin qrsh with a prolog)
PE = "envsched"                  # tightly integrated, in SITE_QUEUE
UNPRIVILEGED_QUEUE = "user.q"    # unprivileged mode: the user-namespace starter, no prolog


def _time_qsubs(c: UgeCluster, n: int, *args: str, user: Optional[str] = None,
                server_only: bool = False) -> List[float]:
    """Seconds per held submission (then qdel). server_only: `qsub -clear` first, which drops the
    cell's sge_request and so the client JSV: what the server JSV alone costs."""
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        p = c.run(["qsub", *(["-clear"] if server_only else []), "-terse", "-o", "/dev/null", "-h", "-b", "y",
                   "-N", "timing", *args, "/bin/true"], user=user)
        times.append(time.monotonic() - t0)
        assert p.returncode == 0, p.stderr
        c.run(["qdel", p.stdout.strip().splitlines()[-1].split(".")[0]])
    return times


def render_section(rendered: str, name: str) -> List[str]:
    from envsched.siteconfig import section
    return [line for line in section(rendered, name).splitlines() if line.strip()]


def install_site(c: UgeCluster, policy: Path, log: Path, binds: Sequence[str],
                 wrap: Callable[[List[str]], List[str]] = list) -> Tuple[Path, str]:
    """Install the shims and the starter under c.dir/libexec and configure the cluster from the
    render output, section by section, the way docs/admin.md tells an admin to. The render runs
    with the cluster's environment, so it reads the queues' tmpdir (c.dir/tmp) with qconf;
    `wrap` turns its argv into one that runs where qconf reaches the cluster (the virtual cell's
    head node)."""
    libexec = c.dir / "libexec"
    libexec.mkdir(mode=0o755, exist_ok=True)
    for name in ("envsched_jsv.py", "envsched_uge.py"):
        shutil.copy(installed.shim(REPO / "plugins" / "uge" / name, name), libexec / name)
        (libexec / name).chmod(0o755)
    shutil.copy(installed.shim(REPO / "plugins/uge/starter/envsched-uge-starter", "uge-starter"), libexec / "uge-starter")
    os.chown(libexec / "uge-starter", 0, 0)
    (libexec / "uge-starter").chmod(0o4755)
    for name in ("epilog", "prolog"):
        shutil.copy(installed.shim(REPO / f"plugins/uge/starter/envsched-uge-{name}", f"uge-{name}"), libexec / f"uge-{name}")
        (libexec / f"uge-{name}").chmod(0o755)
    envsched = envsched_cmd()
    tools = c.dir / "uge-tools"
    subprocess.run([envsched, "--policy", str(policy), "site-config", "host-tools", "--scheduler", "uge",
                    "--sge-root", str(c.root), str(tools)], check=True, stdout=subprocess.DEVNULL)
    argv = [envsched, "--policy", str(policy), "site-config", "render", "--scheduler", "uge",
            "--plugin-dir", str(libexec), *(["--src", installed.src()] if installed.src() else []), "--resolver", envsched,
            "--spool-dir", str(c.dir / "spool" / "execd"), "--host-tools", str(tools)]
    for b in binds:
        argv += ["--bind", b]
    rendered = subprocess.run(wrap(argv), check=True, stdout=subprocess.PIPE, text=True, env=render_env(c)).stdout
    # files
    jsv = render_section(rendered, "jsv")
    jsv[-1] += f" --log {log}"            # test only: the protocol log, read by test_submission_cost
    (libexec / "uge-jsv").write_text("\n".join(jsv) + "\n")
    (libexec / "uge-jsv").chmod(0o755)
    (libexec / "uge-starter.conf").write_text("\n".join(render_section(rendered, "starter_conf")) + "\n")
    (libexec / "uge-starter.conf").chmod(0o644)
    (c.common / "sge_request").write_text("\n".join(render_section(rendered, "sge_request")) + "\n")
    (c.common / "sge_request").chmod(0o644)
    # the complex, the global JSV, the queues
    complexes = c.qconf("-sc").stdout
    if not any(line.split()[:1] == ["chos"] for line in complexes.splitlines()):
        d = c.dir / "conf" / f"complex-{uuid.uuid4().hex[:8]}"
        d.write_text(complexes.rstrip("\n") + "\n" + "\n".join(render_section(rendered, "complex")) + "\n")
        try:
            c.qconf("-Mc", str(d))
        finally:
            d.unlink()
    (key, value), = [line.split(None, 1) for line in render_section(rendered, "global")]
    c.set_global_conf(**{key: value})
    for queue, section in ((SITE_QUEUE, "queue"), (INTERACTIVE_QUEUE, "interactive_queue")):
        for line in render_section(rendered, section):
            attr, value = line.split(None, 1)
            c.qconf("-mattr", "queue", attr, value, queue)
    c.qconf("-mattr", "queue", "qtype", "BATCH", SITE_QUEUE)
    c.qconf("-mattr", "queue", "qtype", "INTERACTIVE", INTERACTIVE_QUEUE)
    # a tightly integrated parallel environment: slave tasks start with `qrsh -inherit`
    pe = c.dir / "conf" / "pe-envsched"
    pe.write_text("pe_name envsched\nslots 99\nuser_lists NONE\nxuser_lists NONE\nstart_proc_args NONE\n"
                  "stop_proc_args NONE\nallocation_rule $round_robin\ncontrol_slaves TRUE\n"
                  "job_is_first_task FALSE\nurgency_slots min\naccounting_summary FALSE\nqsort_args NONE\n")
    c.qconf("-Ap", str(pe))
    c.qconf("-mattr", "queue", "pe_list", PE, SITE_QUEUE)
    c.qconf("-mattr", "queue", "slots", "4", SITE_QUEUE)
    add_unprivileged_queue(c, argv, libexec, wrap)
    return libexec, rendered


def add_unprivileged_queue(c: UgeCluster, render_argv: List[str], libexec: Path,
                           wrap: Callable[[List[str]], List[str]] = list) -> None:
    """user.q (last by seq_no: only for -q user.q while all.q has room): unprivileged mode, its
    starter and queue lines from `render --unprivileged`."""
    rendered = subprocess.run(wrap(render_argv + ["--unprivileged"]), check=True, stdout=subprocess.PIPE,
                              text=True, env=render_env(c)).stdout
    (libexec / "uge-user-starter").write_text("\n".join(render_section(rendered, "user_starter")) + "\n")
    (libexec / "uge-user-starter").chmod(0o755)
    template = (c.dir / "conf" / SITE_QUEUE).read_text()      # as start.sh made it, before envsched
    lines = []
    for line in template.splitlines():
        key = line.split(None, 1)[0] if line.strip() else ""
        if key in ("qname", "seq_no", "prolog", "epilog", "starter_method", "pe_list", "slots"):
            continue
        lines.append(line)
    lines += [f"qname {UNPRIVILEGED_QUEUE}", "seq_no 50", "prolog NONE", "epilog NONE", "pe_list NONE",
              "slots 2"] + render_section(rendered, "queue")
    path = c.dir / "conf" / UNPRIVILEGED_QUEUE
    path.write_text("\n".join(lines) + "\n")
    c.qconf("-Aq", str(path))


def render_env(c: UgeCluster) -> Dict[str, str]:
    """`site-config render` as an admin runs it on the cluster: qconf reaches this cluster."""
    return {**os.environ, **c.env}


def envsched_cmd() -> str:
    return installed.envsched()
