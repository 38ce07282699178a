/* torque-starter: Torque's `$job_starter`, installed set-user-ID root.
 *
 * Contract (Torque src/resmom/start_exec.c; docs/admin.md section 13): with `$job_starter PATH`
 * in mom_priv/config and WITHOUT `$job_starter_run_privileged true`, pbs_mom's child starts a
 * new session (setsid), becomes the job's user (become_the_user_sjr: groups, gid, uid) and execs
 *   batch job:  [starter, <shell path>, <shell argv0, "-bash" for a login shell>, ...], script
 *               on stdin (mom_jobstarter_execute_job)
 *   TM task:    [starter, task argv...] (become_the_jobs_subprocess: pbsdsh, mpirun via tm)
 * with the job's environment (InitUserEnv). That environment is the user's to write: their -v
 * variables, and for a TM task every variable of the TM request, added last over pbs_mom's own
 * (so a task can set USER, HOME, PBS_JOBID, PBS_QUEUE to anything). Nothing in it decides who
 * or which job this is (job.c says where each comes from). The sequence:
 *
 *   1. keep our initial environment: glibc's secure mode drops LD_*, TMPDIR, ... for a
 *      set-user-ID program, and the job gets them back after step 8
 *   2. we must be set-user-ID root; our real uid is the job's owner. uid 0 is not a job
 *      identity unless the site says so (root_jobs=allow), and even then not while pbs_mom's
 *      configuration runs the starter privileged (then every job would arrive as uid 0)
 *   3. our configuration beside us (torque-starter.conf, root-owned like the program)
 *   4. the job (job.c): the uid from the kernel, the job id from the job's cgroup or PBS_JOBID
 *      checked against the root record our prologue wrote, queue and account from that record
 *   5. the job's pin: a pin of this job prepared for the same request (by the prologue or an
 *      earlier task) is joined without Python; otherwise the resolver prepares one, once per
 *      job per node (plugins/common/es_run.c: absolute trusted path, clean environment, as root)
 *   6. setns into the pinned mount namespace
 *   7. drop privileges for good: real/effective/saved gid and uid back to the real ones pbs_mom
 *      gave us (the supplementary groups it set stay), check that uid 0 cannot come back,
 *      no_new_privs
 *   8. the job's environment back (what glibc dropped), then the plan's env operations (CHOS, ...)
 *   9. chdir back to the directory pbs_mom gave us, else the user's home, else /
 *  10. exec: the batch shell with its argv0 (login shell "-sh"), the script still on stdin;
 *      a TM task as given (searched in the job's PATH). With the environment's `launcher`
 *      (../../common/es_launch.c): execv(launcher, [launcher args..., program, its arguments...]),
 *      the program found in the job's PATH in the view as execvp would; a login shell's "-sh"
 *      is not passed on (the launcher names the program by its path)
 *
 * Every failure is one line on stderr (the job's error file for a batch job), the same line with
 * the job, user and key in syslog, and an exit code from ../../common/envsched_exit.h; the job
 * never runs in another environment.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/es_fail.h"
#include "../../common/es_join.h"
#include "../../common/es_launch.h"
#include "torque_starter.h"

static struct es_tjob job;

static void __attribute__((noreturn, format(printf, 2, 3))) die(int code, const char *fmt, ...)
{
    char context[384];
    va_list ap;

    snprintf(context, sizeof context, "scheduler=torque job=%s user=%s uid=%u key=%s", job.id[0] ? job.id : "?",
             job.user[0] ? job.user : "?", (unsigned)getuid(), job.key[0] ? job.key : "-");
    va_start(ap, fmt);
    es_vfail(code, "envsched-torque-starter", context, fmt, ap);
}

static void check_identity(const struct es_conf *conf)
{
    char err[PATH_MAX + 256];

    if (geteuid() != 0)
        die(ENVSCHED_EXIT_NOT_PERMITTED, "the Torque job starter is not installed set-user-ID root");
    if (getuid() != 0)
        return;
    if (!conf->root_jobs)
        die(ENVSCHED_EXIT_NOT_PERMITTED, "a job of root's, or a starter run privileged: envsched's Torque starter "
            "runs as the job's user (remove $job_starter_run_privileged from mom_priv/config; root's own jobs "
            "need root_jobs=allow in torque-starter.conf)");
    if (!conf->mom_config[0])
        die(ENVSCHED_EXIT_POLICY_INVALID, "starter configuration: root_jobs=allow needs mom_config=");
    int privileged = es_mom_starter_privileged(conf->mom_config, err, sizeof err);
    if (privileged != 0)
        die(privileged < 0 ? ENVSCHED_EXIT_POLICY_INVALID : ENVSCHED_EXIT_NOT_PERMITTED, "%s",
            privileged < 0 ? err : "pbs_mom runs the job starter privileged ($job_starter_run_privileged): every job "
            "would arrive as root; remove it from mom_priv/config");
}

int main(int argc, char **argv)
{
    struct es_conf conf;
    struct es_tpin pin;
    static struct es_launcher launcher;
    char err[2048], cwd[PATH_MAX], found[PATH_MAX];
    int ran_resolver;

    if (argc < 2)
        die(ENVSCHED_EXIT_USAGE, "usage: torque-starter JOB [ARGS...] (Torque's $job_starter)");
    /* 1 */
    if (es_env_saved() != 0)
        die(ENVSCHED_EXIT_SETUP_FAILED, "cannot read /proc/self/environ");
    /* 3 (before 2: whether root's jobs may run is the site's word) */
    if (es_conf_load(&conf, ES_TORQUE_CONF, err, sizeof err) != 0)
        die(ENVSCHED_EXIT_POLICY_INVALID, "starter configuration: %s", err);
    /* 2 */
    check_identity(&conf);
    /* 4 */
    int rc = es_tjob_identify(&conf, &job, err, sizeof err);
    if (rc != 0)
        die(rc, "%s", err);
    /* 5 */
    rc = es_tpin_open(&conf, &job, getenv("CHOS"), &pin, &ran_resolver, err, sizeof err);
    if (rc != 0)
        die(rc, "%s", err);
    if (getcwd(cwd, sizeof cwd) == NULL)
        cwd[0] = '\0';
    /* 6, 7 (plugins/common/es_join.c, shared with the Grid Engine starter and the OpenPBS joiner) */
    char where[PATH_MAX + 100];
    snprintf(where, sizeof where, "%s/%s", conf.run_dir, pin.key);
    rc = es_join_and_drop(pin.dirfd, pin.has_view, where, job.uid, job.gid, err, sizeof err);
    if (rc != 0)
        die(rc, "%s", err);
    /* 8 */
    es_env_restore();
    if (es_env_apply_shim(pin.shim) != 0)
        die(ENVSCHED_EXIT_SETUP_FAILED, "cannot set the job's environment variables");
    /* 9 */
    if (!((cwd[0] && chdir(cwd) == 0) || chdir(job.home) == 0 || chdir("/") == 0))
        die(ENVSCHED_EXIT_SETUP_FAILED, "no usable working directory in the environment");
    /* 10: a batch shell is [path, argv0, ...] with argv0 its base name, "-" first for a login shell */
    char **cmd = argv + 1;
    int ncmd = argc - 1;
    const char *base = strrchr(cmd[0], '/') ? strrchr(cmd[0], '/') + 1 : cmd[0];
    int shell = ncmd >= 2 && cmd[0][0] == '/' &&
                (strcmp(cmd[1], base) == 0 || (cmd[1][0] == '-' && strcmp(cmd[1] + 1, base) == 0));
    if (es_launcher_parse(pin.shim, &launcher) != 0)
        die(ENVSCHED_EXIT_SETUP_FAILED, "the job's environment names an unusable launcher");
    if (launcher.argc > 0) {
        const char *program = shell ? cmd[0] : es_launch_resolve(cmd[0], getenv("PATH"), found, sizeof found);
        char **launch = shell ? es_launch_argv(&launcher, program, cmd + 2, ncmd - 2)
                              : es_launch_argv(&launcher, program, cmd + 1, ncmd - 1);
        if (launch == NULL)
            die(ENVSCHED_EXIT_INTERNAL, "out of memory");
        execv(launcher.argv[0], launch);
        int e = errno;
        die(es_launch_exit_code(e), "cannot execute the launcher %s: %s", launcher.argv[0], strerror(e));
    }
    if (shell)
        execv(cmd[0], cmd + 1);
    else
        execvp(cmd[0], cmd);
    int e = errno;
    die(e == ENOENT ? ENVSCHED_EXIT_NOT_FOUND : ENVSCHED_EXIT_EXEC_FAILED,
        "%s: cannot execute in the job's environment: %s", cmd[0], strerror(e));
}
