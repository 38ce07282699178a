/* torque-starter-core: Torque's privileged job starter, stage 2 (stage 1 is envguard.c).
 *
 * Contract (docs/admin.md section 13 has each fact's source): with `$job_starter PATH` and
 * `$job_starter_run_privileged true` in mom_priv/config, pbs_mom execs the starter as root,
 * with the job's environment (qsub -v variables included), in place of the job:
 *   batch job:  [starter, <shell path>, <shell argv0, "-bash" for a login shell>], script on stdin
 *   TM task:    [starter, task argv...]   (pbsdsh, mpirun through tm_spawn)
 * Stage 1 hands us `--env-fd N -- ARGV...` and a clean environment. The sequence:
 *
 *   1. the job's environment from the descriptor; we must be root (real and effective)
 *   2. our configuration beside us (torque-starter.conf, root-owned like the program)
 *   3. the job: PBS_JOBID and USER as pbs_mom set them. They are trustworthy here because
 *      pbs_mom builds the environment itself and runs us as root: it adds the job's own
 *      variables first and then its values for HOME, USER, LOGNAME, PBS_JOBID, PBS_QUEUE, ...
 *      over them (Torque src/resmom/start_exec.c, InitUserEnv / start_process). As a second
 *      guard, USER must name a passwd entry whose home is HOME (pbs_mom sets HOME from the job
 *      owner's passwd entry) and LOGNAME, when set, must equal USER.
 *   4. the job's pin: a pin of this job prepared for the same request (by the prologue or an
 *      earlier task) is joined without Python; otherwise the resolver prepares one, once per
 *      job per node (plugins/common/es_run.c: absolute path, clean environment)
 *   5. setns into the pinned mount namespace
 *   6. drop privileges for good: the user's groups (initgroups), gid, uid (setresgid,
 *      setresuid), check that uid 0 cannot come back, no_new_privs
 *   7. the job's environment, then the plan's env operations (CHOS, ...)
 *   8. chdir back to the directory pbs_mom gave us, else the user's home, else /
 *   9. exec: the batch shell with its argv0 (login shell "-sh"), the script still on stdin;
 *      a TM task as given (searched in the job's PATH)
 *
 * Every failure is one line on stderr (the job's error file for a batch job) and an exit code
 * from ../../common/envsched_exit.h; the job never runs in another environment.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "../../common/es_fail.h"
#include "torque_starter.h"

static struct es_tjob job;

static void __attribute__((noreturn, format(printf, 2, 3))) die(int code, const char *fmt, ...)
{
    char context[256];
    va_list ap;

    snprintf(context, sizeof context, "job=%s user=%s key=%s", job.id[0] ? job.id : "?",
             job.user[0] ? job.user : "?", job.key[0] ? job.key : "-");
    va_start(ap, fmt);
    es_vfail(code, "envsched-torque-starter", context, fmt, ap);
}

static int valid_jobid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 56 || !((id[0] >= '0' && id[0] <= '9')))
        return 0;
    return strspn(id, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-_[]") == n &&
           strchr(id, '[') == NULL;
}

static void identify(char **env)
{
    const char *id = es_jobenv_get(env, "PBS_JOBID"), *user = es_jobenv_get(env, "USER");
    const char *logname = es_jobenv_get(env, "LOGNAME"), *home = es_jobenv_get(env, "HOME");
    const char *chos = es_jobenv_get(env, "CHOS"), *queue = es_jobenv_get(env, "PBS_QUEUE");

    if (id == NULL || user == NULL || home == NULL)
        die(ENVSCHED_EXIT_NOT_PERMITTED, "not started by pbs_mom (PBS_JOBID, USER or HOME missing)");
    if (!valid_jobid(id))
        die(ENVSCHED_EXIT_NOT_PERMITTED, "job id '%.80s': not a Torque job id", id);
    snprintf(job.id, sizeof job.id, "%s", id);
    snprintf(job.key, sizeof job.key, ES_TORQUE_KEY_PREFIX "%s", id);
    snprintf(job.user, sizeof job.user, "%.63s", user);
    if (logname != NULL && strcmp(logname, user) != 0)
        die(ENVSCHED_EXIT_NOT_PERMITTED, "USER (%.63s) and LOGNAME (%.63s) differ: not pbs_mom's environment", user,
            logname);
    struct passwd *pw = getpwnam(user);
    if (pw == NULL)
        die(ENVSCHED_EXIT_NO_USER, "job owner '%.63s': no such user on this host", user);
    if (strcmp(pw->pw_dir, home) != 0)
        die(ENVSCHED_EXIT_NOT_PERMITTED, "HOME (%.200s) is not the home of %.63s: not pbs_mom's environment", home,
            user);
    job.uid = pw->pw_uid;
    job.gid = pw->pw_gid;
    snprintf(job.home, sizeof job.home, "%s", pw->pw_dir);
    if ((chos && strlen(chos) > 255) || (queue && strlen(queue) > 255))
        die(ENVSCHED_EXIT_REFUSED, "the job's CHOS or PBS_QUEUE is longer than 255 characters");
    /* the same text the prologue stores (plugins/torque/torque/envsched_torque.py: inputs()) */
    snprintf(job.inputs, sizeof job.inputs, "uid=%u\tchos=%s\tqueue=%s", (unsigned)job.uid, chos ? chos : "",
             queue ? queue : "");
}

static void drop_privileges(void)
{
    if (initgroups(job.user, job.gid) != 0)
        die(ENVSCHED_EXIT_SETUP_FAILED, "initgroups(%s): %s", job.user, strerror(errno));
    if (setresgid(job.gid, job.gid, job.gid) != 0 || setresuid(job.uid, job.uid, job.uid) != 0)
        die(ENVSCHED_EXIT_SETUP_FAILED, "cannot drop privileges: %s", strerror(errno));
    uid_t r, e, s;
    if (getresuid(&r, &e, &s) != 0 || r != job.uid || e != job.uid || s != job.uid)
        die(ENVSCHED_EXIT_SETUP_FAILED, "privileges not dropped");
    if (job.uid != 0 && (setuid(0) == 0 || seteuid(0) == 0))
        die(ENVSCHED_EXIT_SETUP_FAILED, "privileges came back after dropping them");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        die(ENVSCHED_EXIT_SETUP_FAILED, "prctl(PR_SET_NO_NEW_PRIVS): %s", strerror(errno));
}

int main(int argc, char **argv)
{
    struct es_conf conf;
    struct es_tpin pin;
    char err[2048], cwd[PATH_MAX];
    int ran_resolver;

    /* 1 */
    if (argc < 5 || strcmp(argv[1], "--env-fd") != 0 || strcmp(argv[3], "--") != 0)
        die(ENVSCHED_EXIT_USAGE, "usage: torque-starter JOB [ARGS...] (Torque's $job_starter)");
    int fd = atoi(argv[2]);
    char **jobenv = es_jobenv_read(fd);
    close(fd);
    if (jobenv == NULL)
        die(ENVSCHED_EXIT_SETUP_FAILED, "cannot read the job's environment");
    if (getuid() != 0 || geteuid() != 0)
        die(ENVSCHED_EXIT_NOT_PERMITTED, "the job starter runs as root: set $job_starter_run_privileged true "
            "in mom_priv/config");
    /* 2 */
    if (es_conf_load(&conf, ES_TORQUE_CONF, err, sizeof err) != 0)
        die(ENVSCHED_EXIT_POLICY_INVALID, "starter configuration: %s", err);
    /* 3 */
    identify(jobenv);
    /* 4 */
    int rc = es_tpin_open(&conf, &job, jobenv, &pin, &ran_resolver, err, sizeof err);
    if (rc != 0)
        die(rc, "%s", err);
    if (getcwd(cwd, sizeof cwd) == NULL)
        cwd[0] = '\0';
    /* 5 */
    if (pin.has_view) {
        int ns = openat(pin.dirfd, "mnt", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (ns < 0 || setns(ns, CLONE_NEWNS) != 0)
            die(ENVSCHED_EXIT_SETUP_FAILED, "cannot enter the job's environment (%s %s/%s/mnt: %s)",
                ns < 0 ? "open" : "setns", conf.run_dir, pin.key, strerror(errno));
        close(ns);
    }
    close(pin.dirfd);
    /* 6 */
    drop_privileges();
    /* 7 */
    if (clearenv() != 0)
        die(ENVSCHED_EXIT_SETUP_FAILED, "clearenv failed");
    for (char **e = jobenv; *e; e++)
        if (putenv(*e) != 0)
            die(ENVSCHED_EXIT_SETUP_FAILED, "cannot set the job's environment");
    if (es_env_apply_shim(pin.shim) != 0)
        die(ENVSCHED_EXIT_SETUP_FAILED, "cannot set the job's environment variables");
    /* 8 */
    if (!((cwd[0] && chdir(cwd) == 0) || chdir(job.home) == 0 || chdir("/") == 0))
        die(ENVSCHED_EXIT_SETUP_FAILED, "no usable working directory in the environment");
    /* 9: a batch shell is [path, argv0] with argv0 its base name, "-" first for a login shell */
    char **cmd = argv + 4;
    int ncmd = argc - 4;
    const char *base = strrchr(cmd[0], '/') ? strrchr(cmd[0], '/') + 1 : cmd[0];
    if (ncmd == 2 && cmd[0][0] == '/' && (strcmp(cmd[1], base) == 0 || (cmd[1][0] == '-' &&
                                                                        strcmp(cmd[1] + 1, base) == 0)))
        execv(cmd[0], cmd + 1);
    else
        execvp(cmd[0], cmd);
    int e = errno;
    die(e == ENOENT ? ENVSCHED_EXIT_NOT_FOUND : ENVSCHED_EXIT_EXEC_FAILED,
        "%s: cannot execute in the job's environment: %s", cmd[0], strerror(e));
}
