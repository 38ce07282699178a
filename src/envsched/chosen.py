"""The exact version of the environment a decision names, and its identity.

A decision says *which* environment (resolve.py); this says *which version of it* runs and
what identifies that version, before anything is built:

  tree        the policy's path; its digest and label from the newest stamp of that path
              (`envsched env stamp`, versions.py), or no digest and the `version` key. With a
              selector (deb12@sha256:..., deb12@2026.11): the stamped tree of that version,
              wherever it lives, if it is still there.
  image       a version in the admins' image store (images/store.py): the current one of the
              policy's `image = "NAME"`, the one `image = "NAME@sha256:..."` names, or the one
              the job selects; the blob's stat must match what was imported (tampering).
  user-image  the user's own store, found and read as the user when the view is built
              (pin.py / userimage.py): root never opens the user's files, so the digest is
              known only from then on.

An environment with `gpus` or `devices` also gets, here, what of the node's device nodes and GPU
driver its view binds (devices.py: found on this node, recorded in `environment.host_devices`;
service.py refuses the job when that is not enough).

Every failure here is `VersionNotHere` or another `EnvironmentBroken`: the job is refused with
one line and never falls back to another version (a job that asked for an exact version must
run that version or not at all).
"""
from __future__ import annotations

import os

from . import records as dataclasses     # dataclass, replace: without their import cost (#13)
from .errors import EnvironmentBroken
from .names import is_digest
from .records import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Tuple

    from .identity import UserInfo
    from .policy.model import Environment, Policy, UserImages
    from .resolve import Decision


class VersionNotHere(EnvironmentBroken):
    """The requested version of an environment is not on this node (exit 69, no fallback)."""


@dataclass(frozen=True)
class ChosenVersion:
    environment: Environment          # with `path` set to what the view is built from
    digest: str = ""                  # "sha256:<64 hex>", "" when the version has no identity
    version: str = ""                 # the admins' label, "" if none
    image_env: Tuple[str, ...] = ()   # an image's own Env ("K=V")
    workdir: str = ""                 # an image's own WorkingDir


def short(digest: str) -> str:
    """sha256:0123456789ab, for messages."""
    return digest[:len("sha256:") + 12] if digest else "-"


def user_store_path(ui: UserImages, user: UserInfo) -> str:
    """The user's own image store: relative to their home, or the site's absolute template."""
    if ui.store.startswith("/"):
        return ui.store.replace("{user}", user.name)
    return os.path.join(user.home, ui.store)


def choose_version(policy: Policy, decision: Decision, user: UserInfo) -> Optional[ChosenVersion]:
    """The version to build the view from (None for the host OS), or VersionNotHere / broken."""
    env = decision.environment
    if env is None:
        return None
    if env.kind == "user-image":
        path = user_store_path(policy.user_images, user)
        return ChosenVersion(dataclasses.replace(env, path=path))
    chosen = _from_image_store(policy, decision, env) if env.image else _from_tree(policy, decision, env)
    if env.gpus or env.devices:
        from .devices import find
        found = find(chosen.environment, policy.site)
        chosen = dataclasses.replace(chosen, environment=dataclasses.replace(chosen.environment, host_devices=found))
    return chosen


def _from_image_store(policy: Policy, decision: Decision, env: Environment) -> ChosenVersion:
    from .images.store import ImageStore      # only image environments pay for the import
    ref, _, pinned = env.image.partition("@")
    selector = decision.selector
    if selector and not is_digest(selector):
        raise VersionNotHere(f"environment {decision.name}@{selector} is not on this node: an image's "
                             f"versions are its digests (NAME@sha256:...; see `chos list --versions`)")
    store = ImageStore(policy.site.image_dir)
    try:
        rec = store.lookup(ref, selector or pinned or None)
    except EnvironmentBroken as e:
        wanted = f"{decision.name}@{selector}" if selector else decision.name
        raise VersionNotHere(f"environment {wanted} is not on this node (see `chos list --versions`)",
                             detail=f"image store {store.root}: {e.detail or e.message}") from None
    store.check_unchanged(rec)
    return ChosenVersion(dataclasses.replace(env, path=rec.path, kind="image"), rec.digest, env.version,
                         tuple(rec.env), rec.workdir)


def _from_tree(policy: Policy, decision: Decision, env: Environment) -> ChosenVersion:
    from .versions import StampBook, stamps_dir
    book = StampBook(stamps_dir(policy.source))
    selector = decision.selector
    if not selector:
        stamp = book.current(env)
        if stamp is None:
            return ChosenVersion(env, "", env.version)
        return ChosenVersion(env, stamp.digest, stamp.version or env.version)
    stamp = book.find(env.name, selector)
    if stamp is None:
        if selector == env.version:                     # the policy's own label for the tree at `path`
            current = book.current(env)
            return ChosenVersion(env, current.digest if current else "", env.version)
        raise VersionNotHere(f"environment {decision.name}@{selector} is not on this node "
                             f"(see `chos list --versions`)")
    gone = book.still_there(stamp)
    if gone:
        raise VersionNotHere(f"environment {decision.name}@{selector} is not on this node: {gone}")
    return ChosenVersion(dataclasses.replace(env, path=stamp.path), stamp.digest, stamp.version)
