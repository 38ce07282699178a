"""envsched.schedulers: the registry, each adapter's read_site (what the scheduler says, faked here)
and render, `site-config install` (blocks, diffs, backups, atomic writes) and the checks of
`envsched doctor`, without a cluster (tests/slurm/test_site_install.py runs them on a real one)."""
from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

pytest.importorskip("jinja2")

from envsched import schedulers  # noqa: E402
from envsched.cli import envsched as cli  # noqa: E402
from envsched.exitcodes import ExitCode  # noqa: E402
from envsched.policy import parse_policy_text  # noqa: E402
from envsched.schedulers import doctor, install, trust  # noqa: E402
from envsched.schedulers.base import (Finding, InstallTarget, RenderOptions, SchedulerAdapter,  # noqa: E402
                                      SiteConfigError)
from envsched.schedulers.rendering import section  # noqa: E402
from envsched.schedulers.slurm import adapter as slurm  # noqa: E402
from envsched.schedulers.slurm.config import parse_show_config, parse_slurm_conf  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from scheduler_fakes import fake_cluster  # noqa: E402

POLICY = parse_policy_text('[site]\ndefault = "deb12"\nrun_dir = "/run/es"\n[environments.deb12]\npath = "/os/deb12"\n',
                           "/etc/envsched/policy.toml")
ME = (os.getuid(), os.getgid())
SHOW_CONFIG = """Configuration data as of 2026-01-01T00:00:00
AuthInfo                = socket=/srv/slurm/munge/munge.socket.2
AuthType                = auth/munge
PlugStackConfig         = {plugstack}
SlurmdSpoolDir          = /var/lib/slurm/slurmd/%n
SLURM_CONF              = /srv/slurm/slurm.conf
SlurmctldPlugstack      = (null)
"""


@pytest.fixture(autouse=True)
def cluster(monkeypatch):
    return fake_cluster(monkeypatch)


def options(**kw) -> RenderOptions:
    kw.setdefault("policy_path", "/etc/envsched/policy.toml")
    kw.setdefault("resolver", "/usr/bin/envsched")
    return RenderOptions(**kw)


def line_of(text: str) -> str:
    line, = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    return line


# ------------------------------------------------------------------------------------ registry
def test_every_folder_is_a_scheduler_with_the_whole_interface():
    assert list(schedulers.names()) == ["openpbs", "pam", "slurm", "torque", "uge"]
    for a in schedulers.adapters():
        assert isinstance(a, SchedulerAdapter) and a.name and a.title
        assert schedulers.get(a.name) is a
        for method in ("read_site", "render", "install_targets", "doctor", "present", "installed", "host_tools"):
            assert callable(getattr(a, method))
    with pytest.raises(SiteConfigError, match="no renderer for scheduler 'lsf'"):
        schedulers.get("lsf")
    assert schedulers.submit_names() == ["uge"]
    from envsched.submit import SCHEDULERS, get_scheduler
    from envsched.submit.uge import UgeScheduler
    assert list(SCHEDULERS) == ["uge"] and isinstance(get_scheduler("uge"), UgeScheduler)


def test_a_new_scheduler_is_one_folder(tmp_path, monkeypatch, capsys):
    """LSF as a folder (its adapter and its own template) is rendered and offered by the command."""
    pkg = tmp_path / "lsf"
    (pkg / "templates").mkdir(parents=True)
    (pkg / "__init__.py").write_text('ADAPTER = "envsched.schedulers.lsf.adapter:LsfAdapter"\n')
    (pkg / "adapter.py").write_text(
        "from envsched.schedulers.base import SchedulerAdapter, SiteFacts\n"
        "from envsched.schedulers.rendering import render_template\n"
        "class LsfAdapter(SchedulerAdapter):\n"
        "    name = 'lsf'\n    title = 'LSF'\n"
        "    def read_site(self, options):\n        return SiteFacts()\n"
        "    def render(self, policy, options, site):\n"
        "        return render_template('lsf/esub.j2', policy=options.policy_path)\n"
        "    def install_targets(self, policy, options, site, text):\n        return [], []\n")
    (pkg / "templates" / "esub.j2").write_text("LSF_ESUB policy={{ policy }}\n")
    from envsched.schedulers import rendering
    monkeypatch.setattr(schedulers, "__path__", list(schedulers.__path__) + [str(tmp_path)])
    monkeypatch.setattr(rendering, "ADAPTERS_DIR", tmp_path)
    monkeypatch.delitem(schedulers._adapters, "lsf", raising=False)
    try:
        assert "lsf" in schedulers.names()
        assert schedulers.render("lsf", POLICY, options()) == "LSF_ESUB policy=/etc/envsched/policy.toml\n"
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args(["site-config", "render", "--scheduler", "nosuch"])
        assert "'lsf'" in capsys.readouterr().err            # listed among the choices
    finally:
        schedulers._adapters.pop("lsf", None)
        for m in [m for m in sys.modules if m.startswith("envsched.schedulers.lsf")]:
            del sys.modules[m]


# ------------------------------------------------------------------------------------ slurm
def test_slurm_conf_parsers(tmp_path):
    conf = parse_show_config(SHOW_CONFIG.format(plugstack="/srv/slurm/plugstack.conf"))
    assert conf["slurmdspooldir"] == "/var/lib/slurm/slurmd/%n" and "slurmctldplugstack" not in conf
    (tmp_path / "slurm.conf").write_text("# a comment\nClusterName=x\nslurmdspooldir = /a/b  # per node\n"
                                         "Include more.conf\nNodeName=n1 CPUs=2\n")
    (tmp_path / "more.conf").write_text('PlugStackConfig="/etc/x/plugstack.conf"\nSlurmdSpoolDir=/ignored\n')
    conf = parse_slurm_conf(str(tmp_path / "slurm.conf"))
    assert conf["slurmdspooldir"] == "/a/b" and conf["plugstackconfig"] == "/etc/x/plugstack.conf"
    assert parse_slurm_conf(str(tmp_path / "none.conf")) is None


def test_slurm_reads_scontrol_show_config(cluster):
    """The field report: SlurmdSpoolDir is not the default, so neither is the bind."""
    cluster.answers[("scontrol", "show", "config")] = (0, SHOW_CONFIG.format(plugstack="/srv/slurm/plugstack.conf"))
    a = schedulers.get("slurm")
    site = a.read_site(options())
    assert site.values["spool_dir"] == "/var/lib/slurm/slurmd/%n"
    assert site.values["munge_socket_dir"] == "/srv/slurm/munge"
    assert site.values["plugstack"] == "/srv/slurm/plugstack.conf"
    assert site.values["slurm_conf"] == "/srv/slurm/slurm.conf" and not site.warnings
    text = schedulers.render("slurm", POLICY, options())
    assert line_of(text).endswith(" bind=/var/lib/slurm/slurmd bind=/srv/slurm/munge")
    assert "/var/spool/slurmd" not in text
    assert "#   SlurmdSpoolDir /var/lib/slurm/slurmd/%n [scontrol show config]\n" in text
    assert "#   munge socket directory /srv/slurm/munge [AuthInfo socket=/srv/slurm/munge/munge.socket.2, " \
           "scontrol show config]\n" in text
    # flags win
    line = line_of(schedulers.render("slurm", POLICY, options(spool_dir="/x/spool", munge_socket_dir="none")))
    assert line.endswith(" bind=/x/spool")


def test_slurm_falls_back_to_slurm_conf_then_to_defaults(cluster, tmp_path, monkeypatch):
    a = schedulers.get("slurm")
    conf = tmp_path / "slurm.conf"
    conf.write_text("SlurmdSpoolDir=/data/slurmd\nAuthType=auth/slurm\n")
    monkeypatch.setattr(a, "environ", {"SLURM_CONF": str(conf)})
    site = a.read_site(options())
    assert (site.values["spool_dir"], site.source("spool_dir")) == ("/data/slurmd", str(conf))
    assert site.values["munge_socket_dir"] == "none"            # auth/slurm: no munged
    assert site.values["plugstack"] == str(tmp_path / "plugstack.conf")
    assert line_of(a.render(POLICY, options(), site)).endswith(" run_dir=/run/es bind=/data/slurmd")
    monkeypatch.setattr(a, "environ", {})
    site = a.read_site(options())
    assert site.values["spool_dir"] == "/var/spool/slurmd" and site.values["munge_socket_dir"] == "/run/munge"
    assert site.warnings and "no Slurm configuration could be read (scontrol show config: no scontrol on PATH" \
        in site.warnings[0]
    assert site.warnings[0] in a.host_warnings(POLICY, options(), site)
    assert not a.read_site(options(spool_dir="/s", munge_socket_dir="/m")).warnings


def _plugstack(tmp_path, cluster, text, files=None):
    ps = tmp_path / "plugstack.conf"
    ps.write_text(text)
    for name, body in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    cluster.answers[("scontrol", "show", "config")] = (0, SHOW_CONFIG.format(plugstack=ps))
    a = schedulers.get("slurm")
    site = a.read_site(options())
    targets, steps = a.install_targets(POLICY, options(), site, a.render(POLICY, options(), site))
    return targets, steps


def test_slurm_install_goes_where_slurm_reads_it(tmp_path, cluster):
    # Debian's plugstack.conf includes plugstack.conf.d/*.conf: a file of our own there
    (tmp_path / "plugstack.conf.d").mkdir()
    targets, steps = _plugstack(tmp_path, cluster, f"include {tmp_path}/plugstack.conf.d/*.conf\n")
    assert [(t.path, t.kind, t.mode) for t in targets] == [(f"{tmp_path}/plugstack.conf.d/envsched.conf", "file",
                                                            0o644)]
    assert any("restart slurmd" in s.how for s in steps)
    # an envsched line there already (the docs' layout): that file is rewritten
    targets, _ = _plugstack(tmp_path, cluster, "include plugstack.conf.d/*.conf\n",
                            {"plugstack.conf.d/50-es.conf": "# mine\nrequired /opt/envsched_spank.so policy=/p\n"})
    assert [(t.path, t.kind) for t in targets] == [(f"{tmp_path}/plugstack.conf.d/50-es.conf", "file")]
    # a hand-written line in plugstack.conf itself, among other plugins: a block in its place
    shutil.rmtree(tmp_path / "plugstack.conf.d")
    targets, _ = _plugstack(tmp_path, cluster, "required /usr/lib/pyxis.so\n"
                            "required /usr/local/lib/envsched/envsched_spank.so policy=/old\noptional /x.so\n")
    t, = targets
    assert (t.path, t.kind) == (str(tmp_path / "plugstack.conf"), "block")
    new = install.with_block((tmp_path / "plugstack.conf").read_text(), t, "slurm")
    lines = new.splitlines()
    assert lines[0] == "required /usr/lib/pyxis.so" and lines[-1] == "optional /x.so"
    assert lines[1].startswith("# >>> envsched") and lines[-2] == "# <<< envsched"
    assert [ln for ln in lines if slurm.is_envsched_line(ln)] == [line_of(t.text)]


def test_slurm_doctor_reads_the_installed_line(tmp_path, cluster):
    spool = "/srv/nonexistent-envsched-spool"          # not below site.shared (/tmp would be)
    ps = tmp_path / "plugstack.conf"
    cluster.answers[("scontrol", "show", "config")] = (0, SHOW_CONFIG.format(plugstack=ps).replace(
        "/var/lib/slurm/slurmd/%n", f"{spool}/%n"))
    a = schedulers.get("slurm")
    site = a.read_site(options())
    ps.write_text("")
    found = a.doctor(POLICY, options(), site)
    assert [f.check for f in found] == ["plugstack"] and "envsched site-config install" in found[0].fix
    ps.write_text(f"required /nonexistent/envsched_spank.so policy=/etc/envsched/policy.toml resolver=/bin/sh "
                  f"run_dir=/run/other bind=/nonexistent/slurmd bind=/srv/slurm/munge\n")
    found = {f.check: f for f in a.doctor(POLICY, options(), site)}
    assert set(found) >= {"plugin", "run_dir", "spool", "bind"}
    assert f"SlurmdSpoolDir {spool}/%n [scontrol show config] is not bound into views" in found["spool"].problem
    bind = [f.problem for f in a.doctor(POLICY, options(), site) if f.check == "bind"]
    assert "bind=/nonexistent/slurmd" in bind[0] and "exit 71" in bind[0]
    assert "run_dir=/run/other but the policy's site.run_dir is /run/es" in found["run_dir"].problem
    assert a.installed(options(), site) == {"policy": "/etc/envsched/policy.toml", "resolver": "/bin/sh",
                                            "run_dir": "/run/other"}


def test_process_checks_on_this_process():
    libc = next(line.split()[5] for line in Path("/proc/self/maps").read_text().splitlines()
                if len(line.split()) == 6 and "/libc" in line.split()[5])
    assert slurm.mapped(os.getpid(), libc) == (True, True)
    assert slurm.mapped(os.getpid(), "/nonexistent.so") == (False, False)
    started = slurm.process_started(os.getpid())
    assert started is not None and abs(started - __import__("time").time()) < 3600 * 24 * 365
    assert isinstance(slurm.slurmd_processes("/nonexistent/slurm.conf"), list)


# ------------------------------------------------------------------------------------ uge
def test_uge_spool_from_qconf_and_install_targets(cluster, tmp_path, monkeypatch):
    a = schedulers.get("uge")
    cluster.answers[("qconf", "-sconf", "global")] = (0, "execd_spool_dir  /srv/sge/spool\njsv_url none\n")
    cluster.answers[("qconf", "-sconfl")] = (0, "node7\n")
    cluster.answers[("qconf", "-sconf", "node7")] = (0, "execd_spool_dir /local/spool\n")
    site = a.read_site(options())
    assert (site.values["spool_dir"], site.source("spool_dir")) == ("/srv/sge/spool", "qconf -sconf global")
    assert any("host node7 has its own execd_spool_dir /local/spool" in w for w in site.warnings)
    text = a.render(POLICY, options(), site)
    assert "# execd_spool_dir /srv/sge/spool [qconf -sconf global]: bound into every view" in text
    assert section(text, "starter_conf").splitlines()[3] == "bind=/srv/sge/spool"
    (tmp_path / "default" / "common").mkdir(parents=True)
    monkeypatch.setattr(a, "environ", {"SGE_ROOT": str(tmp_path)})
    site = a.read_site(options(plugin_dir="/opt/es"))
    targets, steps = a.install_targets(POLICY, options(plugin_dir="/opt/es"), site,
                                       a.render(POLICY, options(plugin_dir="/opt/es"), site))
    assert [(t.path, t.mode, t.kind) for t in targets] == [
        ("/opt/es/uge-jsv", 0o755, "file"), ("/opt/es/uge-starter.conf", 0o644, "file"),
        (f"{tmp_path}/default/common/sge_request", 0o644, "block")]
    assert {s.section for s in steps} == {"complex", "global", "queue", "interactive_queue"}
    assert any('qconf -mattr queue starter_method "/opt/es/uge-starter" Q' in s.how for s in steps)
    # the client JSV line: an older one is replaced, others kept
    new = install.with_block("-w e\n-jsv /usr/local/libexec/envsched/uge-jsv\n", targets[2], "uge")
    assert new.splitlines()[0] == "-w e" and new.count("-jsv ") == 1 and "-jsv /opt/es/uge-jsv" in new
    site = a.read_site(options(unprivileged=True))
    targets, _ = a.install_targets(POLICY, options(unprivileged=True), site,
                                   a.render(POLICY, options(unprivileged=True), site))
    assert [os.path.basename(t.path) for t in targets] == ["uge-jsv", "uge-user-starter", "sge_request"]


def test_uge_doctor_without_an_install(cluster, tmp_path):
    a = schedulers.get("uge")
    cluster.answers[("qconf", "-sconf", "global")] = (0, "execd_spool_dir /srv/sge/spool\njsv_url none\n")
    cluster.answers[("qconf", "-sc")] = (0, "#name shortcut\narch a RESTRING == YES NO NONE 0\n")
    found = a.doctor(POLICY, options(plugin_dir=str(tmp_path)), a.read_site(options(plugin_dir=str(tmp_path))))
    checks = [f.check for f in found]
    assert checks.count("missing") == 7 and "jsv_url" in checks and "complex" in checks
    assert any("uge-starter (the queues' starter_method, set-user-ID root) does not exist" in f.problem
               for f in found)
    assert any("uge-prolog (the queues' prolog) does not exist" in f.problem for f in found), found


# ------------------------------------------------------------------------------------ torque, openpbs, pam
def test_torque_pbs_home_and_install_targets(cluster, tmp_path, monkeypatch):
    a = schedulers.get("torque")
    home = tmp_path / "torque"
    (home / "mom_priv").mkdir(parents=True)
    (home / "mom_priv" / "config").write_text("$pbsserver head\n$job_starter_run_privileged true\n")
    monkeypatch.setattr(a, "homes", ("/nonexistent", str(home)))
    site = a.read_site(options())
    assert (site.values["pbs_home"], site.source("pbs_home")) == (str(home), f"{home}/mom_priv exists")
    text = a.render(POLICY, options(), site)
    assert f"mom_config={home}/mom_priv/config\n" in section(text, "starter_conf")
    assert f"# PBS_HOME {home} [{home}/mom_priv exists]\n" in text
    targets, steps = a.install_targets(POLICY, options(), site, text)
    modes = {os.path.relpath(t.path, tmp_path) if t.path.startswith(str(tmp_path)) else t.path: (t.mode, t.kind)
             for t in targets}
    assert modes == {"/usr/local/libexec/envsched/torque-starter.conf": (0o644, "file"),
                     "/usr/local/libexec/envsched/torque-submitfilter": (0o755, "file"),
                     "torque/mom_priv/prologue": (0o500, "file"), "torque/mom_priv/prologue.parallel": (0o500, "file"),
                     "torque/mom_priv/epilogue": (0o500, "file"), "torque/mom_priv/epilogue.parallel": (0o500, "file"),
                     "torque/mom_priv/config": (0o644, "block"), "torque/torque.cfg": (0o644, "block")}
    config = next(t for t in targets if t.path.endswith("mom_priv/config"))
    new = install.with_block((home / "mom_priv" / "config").read_text(), config, "torque")
    assert "$job_starter_run_privileged" not in new and new.startswith("$pbsserver head\n")
    assert "\n$job_starter /usr/local/libexec/envsched/torque-starter\n" in new
    found = a.doctor(POLICY, options(), site)
    assert any("turns $job_starter_run_privileged on" in f.problem for f in found)
    monkeypatch.setattr(a, "homes", ("/nonexistent",))
    site = a.read_site(options())
    assert site.values["pbs_home"] == "/var/spool/torque" and "give --spool-dir PBS_HOME" in site.warnings[0]


def test_openpbs_home_from_pbs_conf(cluster, tmp_path, monkeypatch):
    a = schedulers.get("openpbs")
    conf = tmp_path / "pbs.conf"
    conf.write_text("PBS_EXEC=/opt/pbs\nPBS_HOME=/srv/pbs\nPBS_START_MOM=1\n")
    monkeypatch.setattr(a, "environ", {"PBS_CONF_FILE": str(conf)})
    site = a.read_site(options())
    assert (site.values["pbs_home"], site.source("pbs_home")) == ("/srv/pbs", str(conf))
    text = a.render(POLICY, options(), site)
    assert json.loads(section(text, "hook_config"))["binds"] == ["/srv/pbs"]
    targets, steps = a.install_targets(POLICY, options(), site, text)
    assert [os.path.basename(t.path) for t in targets] == ["envsched-openpbs.json", "pbs-join.conf",
                                                           "pbs-prepare.conf"]
    assert steps[0].how == 'qmgr -c "create resource chos type=string"'
    monkeypatch.setattr(a, "environ", {"PBS_CONF_FILE": str(tmp_path / "none")})
    assert "names no PBS_HOME (cannot be read)" in a.read_site(options()).warnings[0]


def test_pam_install_is_the_last_session_line_and_doctor_checks_it(tmp_path, monkeypatch):
    a = schedulers.get("pam")
    monkeypatch.setattr(a, "pam_dir", str(tmp_path))
    (tmp_path / "sshd").write_text("@include common-auth\nsession required pam_envsched.so policy=/old\n"
                                   "session optional pam_systemd.so\n")
    found = a.doctor(POLICY, options(service="sshd"), a.read_site(options()))
    assert any("is not the last session line" in f.problem for f in found)
    text = a.render(POLICY, options(service="sshd"), a.read_site(options()))
    t, = a.install_targets(POLICY, options(service="sshd"), a.read_site(options()), text)[0]
    new = install.with_block((tmp_path / "sshd").read_text(), t, "pam")
    assert new.splitlines()[-2].startswith("session required pam_envsched.so policy=/etc/envsched/policy.toml")
    assert new.count("pam_envsched.so") == 1 + text.count("pam_envsched.so") - 1
    (tmp_path / "sshd").write_text(new)
    found = a.doctor(POLICY, options(service="sshd"), a.read_site(options()))
    assert not [f for f in found if f.check == "pam"]
    with pytest.raises(SiteConfigError, match="needs the service"):
        a.install_targets(POLICY, options(), a.read_site(options()), text)


# ------------------------------------------------------------------------------------ install
def test_with_block_is_idempotent_and_removes_what_it_replaces():
    t = InstallTarget("/x", "line one\nline two\n", 0o644, "test", kind="block", legacy=lambda ln: ln == "old")
    once = install.with_block("a\nold\nb\n", t, "slurm")
    assert once.splitlines() == ["a", install.BEGIN.format(scheduler="slurm"), "line one", "line two",
                                 install.END, "b"]
    assert install.with_block(once, t, "slurm") == once
    assert install.with_block(None, t, "slurm").splitlines()[1:3] == ["line one", "line two"]
    gone = InstallTarget("/x", "", 0o644, "test", kind="block", legacy=lambda ln: ln == "old")
    assert install.with_block(once, gone, "slurm") == "a\nb\n"
    at_end = InstallTarget("/x", "last\n", 0o644, "test", kind="block", legacy=lambda ln: ln == "old", at_end=True)
    assert install.with_block("old\na\n", at_end, "pam").splitlines()[-2:] == ["last", install.END]
    with pytest.raises(SiteConfigError, match="has no end line"):
        install.with_block("# >>> envsched: x\nfoo\n", t, "slurm")


def test_plan_diff_backup_and_atomic_write(tmp_path):
    conf = tmp_path / "starter.conf"
    conf.write_text("policy=/old\n")
    conf.chmod(0o600)
    new_file = tmp_path / "jsv"
    targets = [InstallTarget(str(conf), "policy=/new\n", 0o644, "starter_conf"),
               InstallTarget(str(new_file), "#!/bin/sh\n", 0o755, "jsv"),
               InstallTarget(str(tmp_path / "same"), "x\n", 0o644, "same")]
    (tmp_path / "same").write_text("x\n")
    (tmp_path / "same").chmod(0o644)
    changes = install.plan(targets, "uge", owner=ME, trusted_dirs=False)
    assert [c.changed for c in changes] == [True, True, False]
    assert changes[0].diff() == (f"--- {conf}\n+++ {conf}\n@@ -1 +1 @@\n-policy=/old\n+policy=/new\n"
                                 f"{conf}: mode 0600 -> 0644\n")
    assert changes[1].diff().startswith(f"--- /dev/null\n+++ {new_file}\n")
    said = []
    backups = install.apply(changes, say=said.append, now=0)
    assert backups == [f"{conf}.envsched-bak.{__import__('time').strftime('%Y%m%d-%H%M%S', __import__('time').localtime(0))}"]
    assert Path(backups[0]).read_text() == "policy=/old\n" and stat.S_IMODE(os.stat(backups[0]).st_mode) == 0o600
    assert conf.read_text() == "policy=/new\n" and stat.S_IMODE(conf.stat().st_mode) == 0o644
    assert stat.S_IMODE(new_file.stat().st_mode) == 0o755
    assert not [p for p in os.listdir(tmp_path) if "envsched-tmp" in p]
    assert said == [f"{conf}: backup {backups[0]}", f"{conf}: written (starter_conf, mode 0644)",
                    f"{new_file}: written (jsv, mode 0755)"]
    assert install.backup_path(str(conf), 0).endswith(".2")            # never over an earlier backup
    with pytest.raises(SiteConfigError, match="does not exist: install the plugin"):
        install.plan([InstallTarget(str(tmp_path / "no" / "f"), "", 0o644, "x")], "uge", trusted_dirs=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="install writes root's files")
def test_install_command_refuses_without_a_terminal_then_writes(trusted_dir, cluster, capsys):
    policy = trusted_dir / "policy.toml"
    policy.write_text('[site]\nrun_dir = "/run/es"\n')
    policy.chmod(0o644)
    ps = trusted_dir / "plugstack.conf"
    ps.write_text("required /usr/lib/other.so\n")
    cluster.answers[("scontrol", "show", "config")] = (0, SHOW_CONFIG.format(plugstack=ps))
    argv = ["--policy", str(policy), "site-config", "install", "--scheduler", "slurm", "--resolver", "/usr/bin/env"]
    assert cli.main(argv) == ExitCode.USAGE                 # pytest's stdin is no terminal
    out, err = capsys.readouterr()
    assert "not on a terminal: give --yes to write 1 file(s)" in err and out.startswith(f"--- {ps}\n")
    assert ps.read_text() == "required /usr/lib/other.so\n"
    assert cli.main(argv + ["--dry-run"]) == ExitCode.OK and "nothing written" in capsys.readouterr().out
    assert cli.main(argv + ["--yes"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert f"{ps}: written (the plugstack.conf line, mode 0644)" in out
    assert "restart slurmd on every node" in out
    assert ps.read_text().startswith("required /usr/lib/other.so\n# >>> envsched")
    assert len(list(trusted_dir.glob("plugstack.conf.envsched-bak.*"))) == 1
    assert cli.main(argv + ["--yes"]) == ExitCode.OK and "nothing to change" in capsys.readouterr().out


def test_install_needs_root(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli.main(["site-config", "install", "--scheduler", "slurm", "--yes"]) == ExitCode.NOT_PERMITTED
    assert "site-config install needs root" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ doctor
def test_trust_walk_follows_es_run_c():
    assert trust.trusted_program("/bin/sh") is None
    assert trust.trusted_walk("/usr/bin", want_dir=True)[1] is None
    assert "not an absolute path" in trust.trusted_program("bin/sh")
    assert "No such file" in trust.trusted_program("/nonexistent/envsched")
    assert "not a regular file" in trust.trusted_walk("/usr/bin")[1]
    assert "not set-user-ID" in trust.setuid_problem("/bin/sh")


def test_trust_judges_the_interpreter(tmp_path):
    script = tmp_path / "envsched"
    script.write_text("#!/usr/bin/env python3\n")
    script.chmod(0o755)
    why = trust.trusted_program(str(script))
    # this file is not root's (or, as root, /tmp is writable by others): the walk stops there
    assert why and str(tmp_path).split("/")[1] in why
    if os.geteuid() == 0:
        return
    assert "owned by root" in why or "writable by group or others" in why


def test_doctor_helpers(tmp_path):
    assert doctor.parse_kv("# c\npolicy=/p\nbind=/a\nbind=/b:/c:rw\n") == {"policy": ["/p"], "bind": ["/a", "/b:/c:rw"]}
    files = {"/proc/sys/user/max_user_namespaces": "0\n"}
    assert doctor.userns_problem(files.get) == "/proc/sys/user/max_user_namespaces is 0"
    assert doctor.userns_problem({}.get) is None
    f, = doctor.userns_findings(["Grid Engine's unprivileged mode"], files.get)
    assert f.check == "userns" and "sysctl" in f.fix
    conf = tmp_path / "starter.conf"
    found = doctor.conf_findings(str(conf), {"run_dir": ["/run/other"], "bind": ["/nonexistent/spool"]}, POLICY,
                                 "envsched site-config install --scheduler uge", ["/srv/spool"])
    checks = [x.check for x in found]
    assert checks == ["conf", "run_dir", "bind", "bind"]
    assert Finding("x", "broken", "mend").line("slurm") == "slurm: x: broken -- fix: mend"
    assert Finding("x", "odd", "look", note=True).line("node") == "note: node: x: odd -- fix: look"


def test_doctor_command_on_a_clean_pam_node(trusted_dir, tmp_path, monkeypatch, capsys):
    """doctor runs the policy's checks, then the adapter's; exit 0 when clean, 1 with a problem."""
    policy = trusted_dir / "policy.toml"
    policy.write_text('[site]\nrun_dir = "/run/envsched-doctor-test-nonexistent"\n')
    policy.chmod(0o644)
    a = schedulers.get("pam")
    monkeypatch.setattr(a, "pam_dir", str(tmp_path))
    (tmp_path / "login").write_text("session required pam_unix.so\n")
    monkeypatch.setattr(doctor, "userns_problem", lambda read=None: None)
    rc = cli.main(["--policy", str(policy), "doctor", "--scheduler", "pam"])
    out = capsys.readouterr().out
    assert rc == ExitCode.OK, out
    assert out.splitlines()[-1] == f"envsched doctor: ok (policy {policy}; pam)"
    rc = cli.main(["--policy", str(policy), "doctor", "--pam", "login"])
    out = capsys.readouterr().out
    assert rc == ExitCode.CHECK_FAILED
    assert f"pam: pam: {tmp_path}/login has no pam_envsched.so line -- fix: envsched site-config install --pam " \
           "login\n" in out
    assert out.splitlines()[-1] == f"envsched doctor: 1 problem (policy {policy}; pam)"


def test_host_tools_refuses_a_scheduler_without_them(trusted_dir, capsys, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    policy = trusted_dir / "policy.toml"
    policy.write_text("")
    policy.chmod(0o644)
    monkeypatch.setattr("envsched.policy.load.check_trusted_path", lambda *a, **k: None)
    assert cli.main(["--policy", str(policy), "site-config", "host-tools", "--scheduler", "torque",
                     str(trusted_dir / "t")]) == ExitCode.USAGE
    assert "no host tools for Torque" in capsys.readouterr().err


def test_render_section_and_unknown_section():
    text = schedulers.render("uge", POLICY, options())
    with pytest.raises(SiteConfigError, match=r"no section 'nope' \(have: complex, global"):
        section(text, "nope")


def test_root_files_go_only_into_trusted_directories(tmp_path):
    """As root's (owner 0:0), a file is not written where others could replace it (/tmp is 1777)."""
    with pytest.raises(SiteConfigError, match="its directory is not trusted"):
        install.plan([InstallTarget(str(tmp_path / "f"), "x\n", 0o644, "x")], "slurm")
