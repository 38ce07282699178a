"""Images entered through FUSE as the user: a user's own image, or any image in `chos run`.

Root never mounts a user's file-system image in the kernel (a crafted squashfs is a kernel
attack surface). Instead, everything here runs as the user, in a user namespace of their own
that maps only their uid and gid:

  1. unshare(CLONE_NEWUSER)        the caller becomes "root" of a namespace mapping only itself
                                   (view.py: enter_user_namespace)
  2. open /dev/fuse                in that namespace (the kernel ties the FUSE connection to it)
  3. fork the server, gated        squashfuse, as the user, with no_new_privs, outside the view's
                                   mount namespace (so it never keeps the view alive) and with
                                   nothing of ours but the FUSE descriptor; it waits on a pipe
  4. unshare(CLONE_NEWNS)          the view's mount namespace, owned by the user's namespace
  5. mount fuse with fd=N          nosuid, nodev, ro; only the user's own ids may access it
  6. open the gate                 squashfuse execs and serves /dev/fd/N (libfuse: the mount is
                                   already made); the first stat waits for its answer
When the view's last process is gone, the kernel ends the FUSE connection and squashfuse exits.

Setuid files in the image do nothing (FUSE in a user namespace is nosuid, and every entry sets
no_new_privs), device nodes are dead (nodev), and the user gains nothing they did not have.
A joiner enters such a view as the user: privileges dropped first, then setns into the user's
namespace and then its mount namespace (pin.py, plugins/common/es_join.c).
"""
from __future__ import annotations

import errno
import os
from typing import Any, Dict, Optional, Sequence, Tuple

from . import linux
from .errors import EnvironmentBroken, SetupError
from .plan import Plan

SQUASHFUSE = "/usr/bin/squashfuse"
DEV_FUSE = "/dev/fuse"
MS_RDONLY = 0x1


def user_image_op(plan: Plan) -> Optional[Dict[str, Any]]:
    return next((op for op in plan.ops if op["op"] == "user_image"), None)


def find_user_image(plan: Plan) -> Tuple[str, str, Tuple[str, ...], str]:
    """As the user: (file, digest, Env, WorkingDir) of the user image the plan names, from the
    user's store (the store and everything in it are the user's, checked as theirs)."""
    op = user_image_op(plan)
    if op is None or plan.kind != "user-image":
        raise SetupError("not a plan for a user image")
    from .images.store import ImageStore
    store = ImageStore(plan.source, owner=os.getuid())
    rec = store.lookup(op["name"], op.get("selector") or None)
    store.check_unchanged(rec)
    return rec.path, rec.digest, tuple(rec.env), rec.workdir


class FuseServer:
    """Steps 2, 3, 5 and 6 for one image file (see the module's docstring)."""

    def __init__(self, image: str, keep_fds: Sequence[int] = ()) -> None:
        self.image = image
        try:
            self.fd = os.open(DEV_FUSE, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise EnvironmentBroken(f"images entered as the user need {DEV_FUSE} readable and writable by "
                                    f"users (mode 0666, as udev makes it): {e.strerror}") from e
        self.gate_r, self.gate_w = os.pipe()
        self.pid = self._fork_server(keep_fds)

    def _fork_server(self, keep_fds: Sequence[int]) -> int:
        """Fork twice, so the server is nobody's child here (a job's shell never reaps it)."""
        pid = os.fork()
        if pid == 0:
            try:
                if os.fork() != 0:
                    os._exit(0)
                self._serve()
            finally:
                os._exit(127)
        os.close(self.gate_r)
        os.waitpid(pid, 0)
        return pid

    def _serve(self) -> None:
        """The server: waits at the gate, then execs squashfuse on the FUSE descriptor."""
        os.close(self.gate_w)
        fuse = os.dup2(self.fd, 3, inheritable=True) if self.fd != 3 else 3
        gate = os.dup2(self.gate_r, 4, inheritable=False) if self.gate_r != 4 else 4
        os.closerange(5, 1 << 16)                  # nothing of the builder's: its pipes, logs
        null = os.open("/dev/null", os.O_RDWR)
        for std in (0, 1, 2):
            os.dup2(null, std)
        if os.read(gate, 1) != b"x":               # the builder gave up before mounting
            os._exit(0)
        os.close(gate)
        os.set_inheritable(fuse, True)
        linux.set_no_new_privs()
        os.execve(SQUASHFUSE, [SQUASHFUSE, "-f", self.image, f"/dev/fd/{fuse}"],
                  {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})

    def mount(self, target: str) -> None:
        """Step 5 and 6: the FUSE mount at `target`, then squashfuse serves it; checked readable."""
        data = f"fd={self.fd},rootmode=40000,user_id={os.getuid()},group_id={os.getgid()}"
        try:
            linux.mount("squashfuse", target, "fuse.squashfuse", MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV, data)
        except SetupError:
            self.abandon()
            raise
        os.write(self.gate_w, b"x")
        os.close(self.gate_w)
        os.close(self.fd)
        try:
            os.listdir(target)
        except OSError as e:
            if e.errno in (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO, errno.ENODEV):
                raise EnvironmentBroken(f"image {self.image} cannot be read (squashfuse refused it: not a "
                                        f"squashfs, or damaged)") from e
            raise SetupError(f"image {self.image}: {e.strerror}") from e

    def abandon(self) -> None:
        for fd in (self.gate_w, self.fd):
            try:
                os.close(fd)
            except OSError:
                pass


def fuse_kinds(plan: Plan, unprivileged: bool) -> bool:
    """Is the plan's image entered through FUSE (a user's own image; any image without root)?"""
    return plan.kind == "user-image" or (unprivileged and plan.kind == "image")


def identity_report(plan: Plan, image_env: Sequence[str], workdir: str) -> Dict[str, Any]:
    """What a builder that ran as the user tells root about the version it found (root checks it:
    check_report)."""
    return {"source": plan.source, "digest": plan.digest, "image_env": list(image_env), "workdir": workdir}


def check_report(report: Dict[str, Any]) -> Tuple[str, str, Tuple[str, ...], str]:
    """(source, digest, image_env, workdir) from a user builder's report, or SetupError: the
    builder ran as the user, who could have written anything into the pipe."""
    from .names import is_digest
    source, digest = report.get("source"), report.get("digest")
    image_env, workdir = report.get("image_env"), report.get("workdir")
    ok = (isinstance(source, str) and source.startswith("/") and isinstance(digest, str)
          and (digest == "" or is_digest(digest, full=True)) and isinstance(workdir, str)
          and (workdir == "" or workdir.startswith("/")) and isinstance(image_env, list) and len(image_env) <= 1024
          and all(isinstance(e, str) and valid_env_entry(e) for e in image_env)
          and not any("\n" in v or "\0" in v for v in [source, workdir]))
    if not ok:
        raise SetupError("the view builder's report is malformed")
    return source, digest, tuple(image_env), workdir


def valid_env_entry(entry: str) -> bool:
    """K=V with a variable name of [A-Za-z_][A-Za-z0-9_]*, no NUL or newline, at most 64 KiB."""
    name, eq, value = entry.partition("=")
    return (bool(eq) and bool(name) and (name[0].isalpha() or name[0] == "_") and name.isascii()
            and all(c.isalnum() or c == "_" for c in name) and "\n" not in entry and "\0" not in entry
            and len(entry) <= 65536)
