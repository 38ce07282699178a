"""`envsched site-config render --scheduler uge`: the sections, what goes into each, and that the
starter configuration holds exactly the keys the set-user-ID starter parses (conf.c)."""
from __future__ import annotations

import dataclasses

import os
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("jinja2")

from envsched import siteconfig  # noqa: E402
from envsched.policy import parse_policy_text  # noqa: E402
from envsched.siteconfig import RenderOptions, SiteConfigError, section  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from scheduler_fakes import fake_cluster  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONF_C = REPO / "plugins" / "uge" / "starter" / "conf.c"
POLICY = parse_policy_text('[site]\ndefault = "deb12"\nrun_dir = "/run/es"\n[environments.deb12]\npath = "/os/deb12"\n',
                           "/etc/envsched/policy.toml")


class Qconf(dict):
    """{qconf's arguments: (status, stdout)}; .calls: every qconf run, without the `qconf`."""

    def __init__(self, cluster):
        super().__init__()
        self.cluster = cluster

    def __setitem__(self, args, answer):
        self.cluster.answers[("qconf", *args)] = answer

    def __getitem__(self, key):
        assert key == "calls"
        return [c[1:] for c in self.cluster.calls if c[0] == "qconf"]


@pytest.fixture(autouse=True)
def qconf(monkeypatch):
    """No cluster answers unless a test says what qconf prints: qconf[args tuple] = (status, stdout)."""
    return Qconf(fake_cluster(monkeypatch))


def render(policy=POLICY, **kw) -> str:
    base = dict(policy_path="/etc/envsched/policy.toml", resolver="/usr/bin/envsched")
    base.update(kw)
    return siteconfig.render("uge", policy, RenderOptions(**base))


def test_privileged_sections():
    text = render()
    names = re.findall(r"^#### ([a-z_]+):", text, re.M)
    assert names == ["complex", "global", "sge_request", "jsv", "queue", "interactive_queue", "starter_conf"]
    assert section(text, "complex") == "chos chos STRING == YES NO NONE 0\n"
    assert section(text, "global") == "jsv_url /usr/local/libexec/envsched/uge-jsv\n"
    assert section(text, "sge_request") == "-jsv /usr/local/libexec/envsched/uge-jsv\n"
    queue = section(text, "queue").splitlines()
    assert [q.split()[0] for q in queue] == ["prolog", "epilog", "starter_method"]
    # the C prolog (the decision cache, else the resolver), the Python prolog's line after it for
    # what it leaves to Python
    assert queue[0].startswith("prolog root@/usr/local/libexec/envsched/uge-prolog /usr/bin/python3 -I "
                               "/usr/local/libexec/envsched/envsched_uge.py prolog --policy /etc/envsched/policy.toml")
    assert queue[2] == "starter_method /usr/local/libexec/envsched/uge-starter"
    assert section(text, "interactive_queue") == "starter_method /usr/local/libexec/envsched/uge-starter\n"
    assert section(text, "starter_conf") == ("policy=/etc/envsched/policy.toml\nresolver=/usr/bin/envsched\n"
                                             "run_dir=/run/es\nbind=/var/spool/gridengine/execd\n")
    assert queue[1] == "epilog root@/usr/local/libexec/envsched/uge-epilog"
    jsv = section(text, "jsv")
    assert jsv.startswith("#!/bin/sh\nexec /usr/bin/python3 -I /usr/local/libexec/envsched/envsched_jsv.py ")
    assert "--accept-request-var" in jsv


def test_unprivileged_has_no_prolog_and_no_setuid_starter():
    text = render(unprivileged=True)
    assert "prolog" not in section(text, "queue") and "uge-starter\n" not in text
    assert section(text, "queue") == "starter_method /usr/local/libexec/envsched/uge-user-starter\n"
    assert 'envsched_uge.py starter --policy /etc/envsched/policy.toml --bind /var/spool/gridengine/execd ' \
           '-- "$@"' in section(text, "user_starter")
    with pytest.raises(SiteConfigError, match="no section 'starter_conf'"):
        section(text, "starter_conf")


def test_binds_host_tools_and_src():
    text = render(plugin_dir="/opt/es", src="/opt/es/src", spool_dir="/var/spool/sge", host_tools="/opt/es/tools",
                  binds=("/scratch", "/var/spool/sge", "/scratch"))
    prolog = section(text, "queue").splitlines()[0]
    assert prolog.endswith("--src /opt/es/src --bind /var/spool/sge --bind /scratch --bind /opt/es/tools")
    conf = section(text, "starter_conf")
    assert "bind=/var/spool/sge\nbind=/scratch\nhost_tools=/opt/es/tools\n" in conf
    assert render(spool_dir="none").count("--bind") == 0


@pytest.mark.parametrize("field,value", [("plugin_dir", "/opt/my dir"), ("src", "relative/src"),
                                         ("binds", ("/a b",)), ("host_tools", "/x#y")])
def test_bad_values_are_refused(field, value):
    with pytest.raises(SiteConfigError):
        render(**{field: value})


def test_starter_conf_keys_are_those_conf_c_parses():
    parsed = set(re.findall(r'strcmp\(key, "([a-z_]+)"\)', CONF_C.read_text()))
    rendered = {line.split("=", 1)[0] for line in section(render(host_tools="/t"), "starter_conf").splitlines()}
    torque_only = {"mom_config", "root_jobs"}           # the Torque starter shares conf.c
    only_when_off = {"cache"}                           # cache=0: site.decision_cache = false
    assert rendered | {"log_file"} | torque_only | only_when_off == parsed == {
        "policy", "resolver", "run_dir", "bind", "host_tools", "log_file", "cache"} | torque_only


def test_decision_cache_off_is_told_to_the_starter_and_prolog():
    """site.decision_cache = false: cache=0 in the configuration the prolog and the starter read
    (they then neither read the cache nor ask the resolver to write it); on by default."""
    assert "cache" not in section(render(), "starter_conf")
    off = dataclasses.replace(POLICY, site=dataclasses.replace(POLICY.site, decision_cache=False))
    assert section(render(off), "starter_conf").endswith("cache=0\n")


def test_too_many_binds():
    with pytest.raises(SiteConfigError, match="at most 16"):
        render(binds=tuple(f"/b{i}" for i in range(16)))


# ------------------------------------------------------------------ the queues' tmpdir (issue 16, item 3)
QUEUE_TEXT = """qname                 {q}
hostlist              @allhosts
seq_no                0
tmpdir                {tmpdir}
shell                 /bin/sh
"""


def test_parse_queue_tmpdirs():
    from envsched.schedulers.uge.tmpdirs import parse_queue_tmpdirs
    assert parse_queue_tmpdirs(QUEUE_TEXT.format(q="all.q", tmpdir="/tmp")) == ["/tmp"]
    assert parse_queue_tmpdirs(QUEUE_TEXT.format(q="all.q", tmpdir="/tmp,[node7=/scratch/tmp], [@big=/local/tmp],"
                                                 "[node8=/tmp]")) == ["/tmp", "/scratch/tmp", "/local/tmp"]
    assert parse_queue_tmpdirs("qname a.q\ntmpdir                /tmp,[node1=/a], \\\n    [node2=/b]\n") \
        == ["/tmp", "/a", "/b"]
    assert parse_queue_tmpdirs("qname a.q\nshell /bin/sh\n") == []


def test_tmpdirs_read_from_every_queue(qconf):
    qconf[("-sql",)] = (0, "all.q\nscratch.q\n")
    qconf[("-sq", "all.q")] = (0, QUEUE_TEXT.format(q="all.q", tmpdir="/tmp"))
    qconf[("-sq", "scratch.q")] = (0, QUEUE_TEXT.format(q="scratch.q", tmpdir="/scratch/sge,[node7=/tmp]"))
    text = render()
    assert "#   tmpdir /tmp (all.q, scratch.q) [qconf -sq]: already read-write in every view through " \
           "site.shared /tmp; no bind\n" in text
    assert "#   tmpdir /scratch/sge (scratch.q) [qconf -sq]: bound read-write (not in the view otherwise)\n" in text
    assert "warning" not in text
    prolog = section(text, "queue").splitlines()[0]
    assert prolog.endswith(" --bind /var/spool/gridengine/execd --bind /scratch/sge:/scratch/sge:rw")
    assert section(text, "starter_conf").endswith("bind=/var/spool/gridengine/execd\n"
                                                  "bind=/scratch/sge:/scratch/sge:rw\n")
    assert "--bind /scratch/sge:/scratch/sge:rw -- \"$@\"" in section(render(unprivileged=True), "user_starter")


def test_tmpdir_option_wins_and_replaces_a_read_only_bind(qconf):
    text = render(tmpdirs=("/scratch/sge/",), binds=("/scratch/sge", "/data"))
    assert qconf["calls"] == [("-sconf", "global")]           # --tmpdir: no queue is asked
    assert "#   tmpdir /scratch/sge [--tmpdir] (--bind /scratch/sge dropped: it would be read-only): bound " \
           "read-write (not in the view otherwise)\n" in text
    assert section(text, "starter_conf").endswith("bind=/var/spool/gridengine/execd\nbind=/data\n"
                                                  "bind=/scratch/sge:/scratch/sge:rw\n")
    # binds mount after site.shared: a read-only one over /tmp hides the shared /tmp, the rw bind goes last
    text = render(tmpdirs=("/tmp/sge",), binds=("/tmp/x", "/tmp:/tmp:ro"))
    assert "#   tmpdir /tmp/sge [--tmpdir]: bound read-write (--bind /tmp:/tmp:ro is read-only there)\n" in text
    assert section(text, "queue").splitlines()[0].endswith(
        " --bind /tmp/x --bind /tmp:/tmp:ro --bind /tmp/sge:/tmp/sge:rw")
    text = render(tmpdirs=("/tmp",), binds=("/tmp:/tmp:ro",))       # the tmpdir itself: dropped
    assert "#   tmpdir /tmp [--tmpdir] (--bind /tmp:/tmp:ro dropped: it would be read-only): already read-write " \
           "in every view through site.shared /tmp; no bind\n" in text
    assert section(text, "queue").count("--bind") == 1
    # a read-write --bind that already shows it: nothing more
    text = render(tmpdirs=("/scratch/sge",), binds=("/scratch:/scratch:rw",))
    assert "through --bind /scratch:/scratch:rw; no bind" in text and text.count("/scratch/sge:") == 0
    text = render(tmpdirs=("none",))
    assert "#   (--tmpdir none: no queue tmpdir is bound)\n" in text and text.count("--bind") == 1
    with pytest.raises(SiteConfigError, match="--tmpdir"):
        render(tmpdirs=("tmp",))
    with pytest.raises(SiteConfigError, match="none"):
        render(tmpdirs=("none", "/tmp"))


@pytest.mark.parametrize("site,envs,why", [
    ('shared = ["/home", "/proc", "/dev", "/sys"]', "", "not in the view otherwise"),
    ('shared = [{path = "/tmp", mode = "ro"}, "/proc"]', "", "site.shared /tmp is read-only there"),
    ('shared = [{path = "/scratch/tmp", target = "/tmp"}]', "", "site.shared /tmp shows another host path there"),
    ("", 'binds = [{source = "/scratch/deb12-tmp", target = "/tmp"}]', "environments deb12 bind over it"),
])
def test_tmp_is_bound_when_the_view_does_not_show_it_read_write(site, envs, why):
    policy = parse_policy_text(f'[site]\ndefault = "deb12"\nrun_dir = "/run/es"\n{site}\n[environments.deb12]\n'
                               f'path = "/os/deb12"\n{envs}\n', "/etc/envsched/policy.toml")
    text = render(policy=policy, tmpdirs=("/tmp",))
    assert f"#   tmpdir /tmp [--tmpdir]: bound read-write ({why})\n" in text
    assert section(text, "starter_conf").endswith("bind=/tmp:/tmp:rw\n")


def test_no_cluster_assumes_tmp_with_a_warning(qconf):
    text = render()
    assert qconf["calls"] == [("-sconf", "global"), ("-sql",)]
    assert "#   tmpdir /tmp [default]: already read-write in every view through site.shared /tmp; no bind\n" in text
    assert "# warning: no Grid Engine cluster answered `qconf -sql` (no qconf on PATH): assumed" in text
    assert any("qconf -sql" in w for w in siteconfig.host_warnings("uge", RenderOptions(
        policy_path="/etc/envsched/policy.toml", resolver="/usr/bin/envsched")))
    qconf[("-sql",)] = (1, "error: commlib error: got select error (Connection refused)")
    assert "(error: commlib error: got select error (Connection refused))" in render(binds=("/x",))
    with pytest.raises(SiteConfigError, match=r"qconf -sq all.q: no qconf on PATH; give --tmpdir PATH"):
        render(queues=("all.q",))                           # a named queue must be answered
    qconf[("-sq", "all.q")] = (0, "qname all.q\n")
    with pytest.raises(SiteConfigError, match="shows no tmpdir"):
        render(queues=("all.q",))
    qconf[("-sq", "all.q")] = (0, QUEUE_TEXT.format(q="all.q", tmpdir="/scratch tmp"))
    with pytest.raises(SiteConfigError, match="tmpdir of queue all.q"):
        render(queues=("all.q",))


def test_rendered_tmpdir_bind_is_writable_for_the_resolver():
    from envsched.cli.jobargs import bind_arg
    conf = section(render(tmpdirs=("/scratch/sge",)), "starter_conf")
    value = [ln.split("=", 1)[1] for ln in conf.splitlines() if ln.startswith("bind=")][-1]
    m = bind_arg(value)
    assert (m.source, m.target, m.writable) == ("/scratch/sge", "/scratch/sge", True)


def test_no_client_jsv():
    """--no-client-jsv: nothing for the cell's sge_request (qsub costs what it does without envsched;
    the server JSV still checks every submission), the rest unchanged."""
    text = render(client_jsv=False)
    assert section(text, "sge_request") == ""
    assert "#### sge_request: nothing in" in text and "\n-jsv " not in text
    assert section(text, "global") == "jsv_url /usr/local/libexec/envsched/uge-jsv\n"
    assert section(text, "queue") == section(render(), "queue")
