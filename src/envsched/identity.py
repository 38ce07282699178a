"""Who a job runs as: user lookup, group names, and dropping root privileges."""
from __future__ import annotations

import grp
import os
import pwd

from .errors import NoSuchUser, SetupError
from .records import dataclass     # dataclasses, without their import cost (#13)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Tuple, Union


@dataclass(frozen=True)
class UserInfo:
    name: str
    uid: int
    gid: int
    gids: Tuple[int, ...]          # supplementary groups, primary included
    groups: Tuple[str, ...]        # names of gids, primary first (unknown gids as numbers)
    home: str
    shell: str


def lookup_user(who: Union[str, int], extra_gids: Tuple[int, ...] = ()) -> UserInfo:
    """By name or uid. `extra_gids` adds groups a scheduler gives the job (e.g. SGE's addgrpid)."""
    try:
        pw = pwd.getpwuid(int(who)) if isinstance(who, int) or str(who).isdigit() else pwd.getpwnam(str(who))
    except (KeyError, ValueError, OverflowError):
        raise NoSuchUser(f"no such user: {who}") from None
    gids = [pw.pw_gid] + [g for g in os.getgrouplist(pw.pw_name, pw.pw_gid) if g != pw.pw_gid]
    gids += [g for g in extra_gids if g not in gids]
    names = []
    for g in gids:
        try:
            names.append(grp.getgrgid(g).gr_name)
        except KeyError:
            names.append(str(g))
    return UserInfo(pw.pw_name, pw.pw_uid, pw.pw_gid, tuple(gids), tuple(names),
                    pw.pw_dir, pw.pw_shell or "/bin/sh")


def current_user() -> UserInfo:
    return lookup_user(os.getuid())


def drop_privileges(user: UserInfo) -> None:
    """As root: supplementary groups, then gid, then uid (real, effective and saved).

    Order matters: once the uid is dropped the groups can no longer be changed. Verified
    afterwards, so a silently failed drop can never let a payload run as root.
    """
    if os.geteuid() != 0:
        if os.getuid() != user.uid:
            raise SetupError(f"cannot become {user.name}: not running as root")
        return
    try:
        os.setgroups(list(user.gids))
        os.setresgid(user.gid, user.gid, user.gid)
        os.setresuid(user.uid, user.uid, user.uid)
    except OSError as e:
        raise SetupError(f"dropping privileges to {user.name} failed: {e.strerror} (errno {e.errno})") from e
    if user.uid != 0 and (os.getresuid() != (user.uid,) * 3 or os.getresgid() != (user.gid,) * 3):
        raise SetupError(f"dropping privileges to {user.name} did not take effect")
