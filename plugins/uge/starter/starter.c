/* envsched-uge-starter: Grid Engine's `starter_method` for privileged mode (set-user-ID root).
 *
 * sge_shepherd runs it as the job user (plus Grid Engine's additional group id), in the job's
 * cwd, with the job's environment and the job as arguments. The sequence:
 *
 *   1. keep our initial environment: glibc dropped TMPDIR, LD_* for a set-user-ID program
 *   2. read the configuration beside this program (root's, like the program)
 *   3. learn the job from our parent, which must be a root sge_shepherd held by a pidfd (its
 *      cwd names the job; the `config` execd wrote there, read as root, gives the queue)
 *   4. script or binary job: from that same config (never a path from the environment)
 *   5. open the job's pin: prepared by the root prolog, or now by the resolver (qrsh, PE
 *      slave tasks); it must be root's and recorded for our real uid
 *   6-8 (plugins/common/es_join.c, shared with the Torque starter and the OpenPBS joiner):
 *   6. setns into the pinned mount namespace (moves our root and cwd into the view)
 *   7. drop privileges for good: real/effective/saved gid and uid back to the user's;
 *      supplementary groups stay as the shepherd set them (Grid Engine kills the job's
 *      processes by its additional group id); check that uid 0 cannot come back
 *   8. no_new_privs: nothing the job runs can gain privileges (set-user-ID files in a tree)
 *   9. environment: what glibc dropped, then the plan's operations (CHOS, ...); in a view,
 *      the host's Grid Engine clients (host_tools) first in PATH
 *  10. chdir back to the job's cwd as the user, else $HOME, else /
 *  11. exec the job the way the shepherd would have; with the environment's `launcher`
 *      (../../common/es_launch.c), that program through the launcher: execv(launcher,
 *      [launcher args..., program, the job's arguments...]), the program found in the job's
 *      PATH in the view as execvp would (a script job's shell; a login shell's "-sh" is not
 *      passed on: the launcher names the program by its path)
 *
 * Every failure is one line on the job's stderr ("envsched: ...", also in syslog with the
 * job, user and key) and an exit code from ../../common/envsched_exit.h; the job never runs
 * in another environment.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/es_fail.h"
#include "../../common/es_join.h"
#include "../../common/es_launch.h"
#include "starter.h"

static struct es_job job;

static void __attribute__((noreturn, format(printf, 2, 3))) die(int code, const char *fmt, ...)
{
    char context[256];
    va_list ap;

    snprintf(context, sizeof context, "job=%s.%s uid=%u key=%s", job.id[0] ? job.id : "?",
             job.task[0] ? job.task : "?", (unsigned)getuid(), job.key[0] ? job.key : "-");
    va_start(ap, fmt);
    es_vfail(code, "envsched-uge-starter", context, fmt, ap);
}

int main(int argc, char **argv)
{
    uid_t uid = getuid();
    gid_t gid = getgid();
    struct es_conf conf;
    struct es_pin pin;
    static struct es_launcher launcher;
    char err[2048], cwd[PATH_MAX], found[PATH_MAX];

    if (argc < 2)
        die(ENVSCHED_EXIT_USAGE, "usage: %s JOB [ARGS...] (Grid Engine's starter_method)", argv[0]);
    if (geteuid() != 0)
        die(ENVSCHED_EXIT_NOT_PERMITTED, "%s is not installed set-user-ID root", argv[0]);
    /* 1 */
    if (es_env_saved() != 0)
        die(ENVSCHED_EXIT_SETUP_FAILED, "cannot read /proc/self/environ: %s", strerror(errno));
    /* 2 */
    if (es_conf_load(&conf, NULL, err, sizeof err) != 0)
        die(ENVSCHED_EXIT_POLICY_INVALID, "starter configuration: %s", err);
    /* 3 */
    if (es_job_identify(&job, err, sizeof err) != 0)
        die(ENVSCHED_EXIT_NOT_PERMITTED, "%s", err);
    /* 4 */
    int kind = job.kind | (job.via_qrsh ? ES_JOB_BINARY : 0);   /* a qrsh command is a command line */
    /* 5 */
    int rc = es_pin_open(&conf, &job, &pin, err, sizeof err);
    if (rc != 0)
        die(rc, "%s", err);
    if (getcwd(cwd, sizeof cwd) == NULL)
        cwd[0] = '\0';
    /* 6, 7, 8 (plugins/common/es_join.c) */
    char where[PATH_MAX + 100];
    snprintf(where, sizeof where, "%s/%s", conf.run_dir, job.key);
    rc = es_join_and_drop(pin.dirfd, pin.has_view, where, uid, gid, err, sizeof err);
    if (rc != 0)
        die(rc, "%s", err);
    /* 9 */
    es_env_restore();
    if (es_env_apply_shim(pin.shim) != 0)
        die(ENVSCHED_EXIT_SETUP_FAILED, "cannot set the job's environment variables");
    if (pin.has_view && conf.host_tools[0] && es_env_prepend_path(conf.host_tools) != 0)
        die(ENVSCHED_EXIT_SETUP_FAILED, "cannot put %s/bin into PATH", conf.host_tools);
    /* 10 */
    if (!((cwd[0] && chdir(cwd) == 0) || (pin.home[0] && chdir(pin.home) == 0) || chdir("/") == 0))
        die(ENVSCHED_EXIT_SETUP_FAILED, "no usable working directory in the environment");
    /* 11 */
    const char *path = NULL;
    char **job_argv = es_job_argv(argc, argv, kind, &path);
    if (job_argv == NULL)
        die(ENVSCHED_EXIT_INTERNAL, "out of memory");
    if (es_launcher_parse(pin.shim, &launcher) != 0)
        die(ENVSCHED_EXIT_SETUP_FAILED, "the job's environment names an unusable launcher");
    if (launcher.argc > 0) {
        int nargs = 0;
        while (job_argv[nargs] != NULL)
            nargs++;
        const char *program = es_launch_resolve(path, getenv("PATH"), found, sizeof found);
        char **launch = es_launch_argv(&launcher, program, job_argv + 1, nargs - 1);
        if (launch == NULL)
            die(ENVSCHED_EXIT_INTERNAL, "out of memory");
        execv(launcher.argv[0], launch);
        int e = errno;
        die(es_launch_exit_code(e), "cannot execute the launcher %s: %s", launcher.argv[0], strerror(e));
    }
    execvp(path, job_argv);
    int e = errno;
    die(e == ENOENT ? ENVSCHED_EXIT_NOT_FOUND : ENVSCHED_EXIT_EXEC_FAILED, "%s: cannot execute in the job's "
        "environment: %s", path, strerror(e));
}
