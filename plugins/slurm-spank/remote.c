/* slurmstepd: prepare the view once per job per node (user_init), join it in every task.
 *
 *   user_init               slurmstepd, real uid root / effective uid the user. Gathers the
 *                           request (--chos, the job's CHOS) and the job's partition and
 *                           account (from the job record the job prolog wrote, jobrec.c: never
 *                           from the job's environment, which is the user's), then either
 *                           finds the job's view prepared by an earlier step with the same
 *                           request (memo.c) or runs the resolver as root, which reads
 *                           ~/.chos as the user, decides, and pins the view. Sets CHOS and the
 *                           policy's env ops in the job environment. Errors are kept for
 *                           task_init: errors returned here do not reach srun (SchedMD 7573).
 *   task_init_privileged    the forked task, root, single-threaded: setns into the pin. Done
 *                           here and not in user_init because slurmstepd is multithreaded and
 *                           a threaded process cannot change its mount namespace.
 *   task_init               the task as the user, just before exec: chdir back to the job's
 *                           cwd (setns moved it to the view's root) with the user's own
 *                           permissions, or $HOME, or /; or refuse (below). A fallback
 *                           (site.on_error = "default": the shim's `warning` line) is told
 *                           the same way, one line per node, and the tasks go on.
 *
 * What the user sees of a refusal is one line (Slurm 22.05.8 source):
 *   - the node's first task writes the line on its stderr (srun's stderr, the batch job's output
 *     file) and every task of the node _exits with the refusal's code (77, 69, 71 ...) before exec.
 *     Returning an error from task_init instead makes the task print "spank: required plugin ...:
 *     task_init() failed with rc=-1" and "Failed to invoke spank plugin stack" and exit 1
 *     (plugstack.c _do_call_stack, task.c exec_task); slurmstepd itself prints nothing for a task
 *     that exits, srun prints "srun: error: NODE: task N: Exited with exit code C";
 *   - what is for the admin goes to slurmd's log with slurm_info, never slurm_error: from
 *     user_init on, slurmstepd's stderr is task 0's and its stderr log level is "error" raised by
 *     srun --slurmd-debug (mgr.c _slurmd_job_log_init): every slurm_error here would reach the
 *     user as "slurmstepd-NODE: error: ..." next to our line.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <slurm/slurm.h>

#include "envsched_spank.h"
#include "memo.h"
#include "../common/es_cache.h"
#include "../common/es_prepare.h"
#include "../common/es_envop.h"
#include "../common/es_join.h"
#include "../common/es_launch.h"

static char failure[ES_MSG_MAX];    /* the user's one line, set when the job must not run */
static int failure_code;            /* and the tasks' exit code */
static char warning[ES_MSG_MAX];    /* the user's one line when the job runs elsewhere (on_error) */
static char pin[PATH_MAX];          /* namespace file to join; empty: host OS, nothing to do */
static int pin_fd = -1, userns_fd = -1;   /* opened as root in task_init_privileged, for task_init */
static char home[PATH_MAX];
static char task_cwd[PATH_MAX];
static int host_pidns = -1;         /* slurmstepd's own PID namespace while its tasks fork in the job's */
static int init_fd = -1;            /* the job's PID namespace's init (a pidfd), for the tasks' ipc/uts */
static int init_flags;              /* the namespaces it holds */
static struct es_launcher launcher; /* the environment's launcher (`launcher` lines), argc 0: none */

static void enter_pid_namespace(void);
static int open_pin_dir(void);

static void fail(int code, const char *fmt, const char *arg)
{
    snprintf(failure, sizeof failure, fmt, arg);
    failure_code = code;
}

/* A variable of the job's environment; "" when unset. -1 when it does not fit: a value we
 * cannot pass on whole must refuse the job, never be dropped (the job would get another env). */
static int getenv_job(spank_t sp, const char *name, char *buf, int len)
{
    spank_err_t rc = spank_getenv(sp, name, buf, len);

    if (rc == ESPANK_SUCCESS)
        return 0;
    buf[0] = '\0';
    return rc == ESPANK_NOSPACE ? -1 : 0;
}

/* Apply one "env ACTION NAME [VALUE]" line to the job environment. */
static int apply_env(spank_t sp, char *line)
{
    enum { CAP = 131072 };
    struct es_envop op;
    int rc = -1;

    if (es_envop_parse(line, &op) != 0)
        return -1;
    if (strcmp(op.action, "unset") == 0)
        return spank_unsetenv(sp, op.name) == ESPANK_SUCCESS ? 0 : -1;
    char *old = malloc(CAP), *value = NULL;
    if (old == NULL || getenv_job(sp, op.name, old, CAP) != 0)
        goto out;                                        /* never drop a value we cannot hold */
    value = es_envop_value(&op, old);
    rc = value != NULL && spank_setenv(sp, op.name, value, 1) == ESPANK_SUCCESS ? 0 : -1;
out:
    free(old);
    free(value);
    return rc;
}

/* The resolver's shim protocol (src/envsched/shim.py): remember the pin and the warning, apply
 * env ops; inside a view, the host's Slurm clients come first in PATH. `warn` 0: a step that asked
 * by name for the environment the job already has is not told again why the job has it. */
static int apply_shim(spank_t sp, char *text, int warn)
{
    char *save = NULL;
    int rc = es_launcher_parse(text, &launcher);         /* before strtok_r cuts the text */

    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "pin ", 4) == 0)
            snprintf(pin, sizeof pin, "%s", strcmp(line + 4, "-") == 0 ? "" : line + 4);
        else if (strncmp(line, "home ", 5) == 0)
            snprintf(home, sizeof home, "%s", line + 5);
        else if (strncmp(line, "env ", 4) == 0 && apply_env(sp, line + 4) != 0)
            rc = -1;
        else if (strncmp(line, "warning ", 8) == 0 && warn) {
            snprintf(warning, sizeof warning, ES_PREFIX "warning: %s", line + 8);
            slurm_info("%s", warning);
        }
    }
    if (rc == 0 && pin[0] && es_cfg.host_tools[0]) {
        char path_op[PATH_MAX + 32];
        snprintf(path_op, sizeof path_op, "prepend PATH %s/bin", es_cfg.host_tools);
        rc = apply_env(sp, path_op);
    }
    return rc;
}

/* The inputs' config= field (../common/es_prepare.c): the policy's path and every bind the resolver gets. */
static void config_id(char out[17])
{
    const char *binds[ES_MAX_BINDS];
    for (int i = 0; i < es_cfg.nbinds; i++)
        binds[i] = es_cfg.binds[i];
    es_config_id(es_cfg.policy, binds, es_cfg.nbinds, es_cfg.host_tools, out);
}

/* The decision cache (../common/es_cache.h): 1 when the job's view was bound from it and the job
 * environment set, as the resolver's own answer would have; 0: the resolver decides. */
static int from_cache(spank_t sp, uid_t uid, const char *inputs, const char *key, const char *jobstep, int named)
{
    static struct es_user user;
    static struct es_cache_hit hit;
    char why[512];

    if (!es_cfg.cache || strpbrk(inputs, "\n\r") != NULL || es_user_lookup(uid, &user) != 0)
        return 0;
    struct es_cache_job cj = {es_cfg.run_dir, inputs, key, !named, getpid(), es_cfg.log_file, "slurm", jobstep};
    int rc = es_cache_try(&cj, &user, 5000, &hit, why, sizeof why);
    if (rc != ES_CACHE_HIT) {
        if (rc == ES_CACHE_ERROR || es_cfg.debug)
            slurm_info(ES_PREFIX "job %s: decision cache %s: %s", jobstep, rc == ES_CACHE_ERROR ? "error" : "miss", why);
        return 0;
    }
    slurm_info(ES_PREFIX "job %s user %s: environment %s from the decision cache", jobstep, user.name, hit.env);
    if (apply_shim(sp, hit.shim, 1) != 0)
        fail(ENVSCHED_EXIT_SETUP_FAILED, ES_PREFIX "cannot set the job environment for %s", key);
    enter_pid_namespace();
    return 1;
}

int es_remote_user_init(spank_t sp)
{
    uint32_t job = 0, step = 0;
    uid_t uid = 0;
    char chos[256], inputs[1024], key[128], fallback[160];
    char jobstep[64], uidstr[16], owner[16], shim[16384];
    static struct es_root_files files;
    struct es_jobrec rec;
    struct es_run r;

    /* the job, its user and the step: from the launch request, which slurmd checked against the
     * job credential slurmctld signed (req.c: _check_job_credential) */
    if (spank_get_item(sp, S_JOB_ID, &job) != ESPANK_SUCCESS ||
        spank_get_item(sp, S_JOB_STEPID, &step) != ESPANK_SUCCESS ||
        spank_get_item(sp, S_JOB_UID, &uid) != ESPANK_SUCCESS) {
        fail(ENVSCHED_EXIT_INTERNAL, ES_PREFIX "cannot read the job's id and user%s", "");
        return 0;
    }
    if (step == SLURM_EXTERN_CONT)
        return 0;                                        /* no user tasks in the extern step */
    /* the request: the user's to choose (the policy decides whether it is granted) */
    if (es_option_error) {
        fail(ENVSCHED_EXIT_USAGE, "%s", es_option_error);
        return 0;
    }
    if (getenv_job(sp, "CHOS", chos, sizeof chos) != 0) {
        fail(ENVSCHED_EXIT_REFUSED, ES_PREFIX "the job's CHOS is too long (more than %s characters)",
             "255");
        return 0;
    }
    /* the node index keeps keys apart when several slurmd share one host (test clusters) */
    uint32_t nodeid = 0;
    if (spank_get_item(sp, S_JOB_NODEID, &nodeid) != ESPANK_SUCCESS)
        nodeid = 0;
    snprintf(key, sizeof key, "slurm-%u-%u", job, nodeid);
    snprintf(fallback, sizeof fallback, "%s.%u", key, step);

    /* partition and account: never the job's SLURM_JOB_PARTITION/SLURM_JOB_ACCOUNT (srun sends the
     * user's environment as it is), but the record the job prolog made from the job credential */
    if (es_root_read(es_cfg.run_dir, job, key, &files) != 0 || files.record_len < 0) {
        fail(ENVSCHED_EXIT_SETUP_FAILED,
             ES_PREFIX "this node has no record of the job's partition and account (the job prolog "
             "wrote none: the node's slurmd log says why); the job does not run here%s", "");
        slurm_info(ES_PREFIX "job %u: no job record under %s/.jobs: the job prolog did not run "
                   "with the plugin (slurmd not restarted since the plugin was added, or the job "
                   "started before) or could not write it (its message is above)", job, es_cfg.run_dir);
        return 0;
    }
    if (es_jobrec_parse(files.record, &rec) != 0 || rec.uid != uid) {
        fail(ENVSCHED_EXIT_SETUP_FAILED,
             ES_PREFIX "this node's record of the job is not usable; the job does not run here%s", "");
        slurm_info(ES_PREFIX "job %u: the job record under %s/.jobs is unreadable or names another "
                   "user than %u", job, es_cfg.run_dir, (unsigned)uid);
        return 0;
    }
    const char *partition = rec.partition, *account = rec.account;

    /* the option beats CHOS: with an option, CHOS is no input of the decision; config= stands for
     * the plugin's own arguments the resolver gets (the policy, the binds of every view) */
    char config[17];
    config_id(config);
    snprintf(inputs, sizeof inputs, "uid=%u\toption=%s\tchos=%s\tpartition=%s\taccount=%s\tconfig=%s",
             (unsigned)uid, es_option_set ? es_option : "", es_option_set ? "" : chos, partition, account,
             config);

    /* the same request as an earlier step of this job: join its view, no resolver */
    char inputs_nl[sizeof inputs + 1];
    snprintf(inputs_nl, sizeof inputs_nl, "%s\n", inputs);
    if (es_memo_match(&files, inputs_nl, es_option_set ? es_option : chos, shim, sizeof shim)) {
        /* the same request as the first step: the same fallback and its warning, if any */
        if (apply_shim(sp, shim, strcmp(files.inputs, inputs_nl) == 0) != 0)
            fail(ENVSCHED_EXIT_SETUP_FAILED, ES_PREFIX "cannot set the job environment for %s", key);
        enter_pid_namespace();
        return 0;
    }

    if (step == SLURM_BATCH_SCRIPT)
        snprintf(jobstep, sizeof jobstep, "%u.batch", job);
    else
        snprintf(jobstep, sizeof jobstep, "%u.%u", job, step);

    /* the same inputs as an earlier job on this node, all unchanged: its decision, no resolver */
    if (from_cache(sp, uid, inputs, key, jobstep, es_option_set || chos[0]))
        return 0;
    snprintf(uidstr, sizeof uidstr, "%u", (unsigned)uid);
    snprintf(owner, sizeof owner, "%d", (int)getpid());
    char *argv[64];
    int n = 0;
    argv[n++] = es_cfg.resolver;
    argv[n++] = "--policy";
    argv[n++] = es_cfg.policy;
    argv[n++] = "prepare";
    argv[n++] = "--format";
    argv[n++] = "shim";
    argv[n++] = "--reuse";
    argv[n++] = "--key";
    argv[n++] = key;
    argv[n++] = "--fallback-key";
    argv[n++] = fallback;
    argv[n++] = "--user";
    argv[n++] = uidstr;
    argv[n++] = "--job";
    argv[n++] = jobstep;
    argv[n++] = "--owner-pid";
    argv[n++] = owner;
    if (es_cfg.cache) {
        argv[n++] = "--shared-view";
        argv[n++] = "--decision-cache";
    }
    /* values the user controls go as --opt=VALUE: a value starting with '-' stays a value */
    char a_chos[sizeof chos + 16], a_inputs[sizeof inputs + 16], a_req[sizeof es_option + 16];
    char a_part[sizeof rec.partition + 16], a_acct[sizeof rec.account + 16];
    snprintf(a_chos, sizeof a_chos, "--chos-var=%s", chos);
    snprintf(a_inputs, sizeof a_inputs, "--inputs=%s", inputs);
    argv[n++] = a_chos;
    argv[n++] = a_inputs;
    if (es_option_set) {
        snprintf(a_req, sizeof a_req, "--request=%s", es_option);
        argv[n++] = a_req;
    }
    if (partition[0]) {
        snprintf(a_part, sizeof a_part, "--partition=%s", partition);
        argv[n++] = a_part;
    }
    if (account[0]) {
        snprintf(a_acct, sizeof a_acct, "--account=%s", account);
        argv[n++] = a_acct;
    }
    for (int i = 0; i < es_cfg.nbinds; i++) {
        argv[n++] = "--bind";
        argv[n++] = es_cfg.binds[i];
    }
    if (es_cfg.host_tools[0]) {
        argv[n++] = "--bind";
        argv[n++] = es_cfg.host_tools;
    }
    argv[n] = NULL;

    if (es_run(argv, 1, &r) != 0) {
        es_replay_log(&r, 0);
        slurm_info(ES_PREFIX "job %s user %s: environment not prepared (resolver exit %d)",
                   jobstep, uidstr, r.status);
        es_user_line(&r, failure, sizeof failure);
        failure_code = es_exit_code(r.status);
        return 0;
    }
    if (es_cfg.debug)
        es_replay_log(&r, 0);
    if (apply_shim(sp, r.out, 1) != 0)
        fail(ENVSCHED_EXIT_SETUP_FAILED, ES_PREFIX "cannot set the job environment for %s", key);
    enter_pid_namespace();
    return 0;
}

int es_remote_task_privileged(spank_t sp)
{
    (void)sp;
    if (failure[0] || pin[0] == '\0')
        return 0;
    if (getcwd(task_cwd, sizeof task_cwd) == NULL)
        task_cwd[0] = '\0';
    int fd = open(pin, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    int users = fd >= 0 ? es_foreign_userns(fd) : -1;
    int dir = users == -1 ? open_pin_dir() : -1;    /* the host's path: opened before the view */
    /* the job's ipc and uts namespaces (and its PID namespace, which the task was forked into
     * already, enter_pid_namespace): joined before the view, whose /proc is the job's own */
    if (init_fd >= 0) {
        /* the init's pidfd, opened by slurmstepd in user_init (a pid of the host's: this task, in
         * the job's namespace already, could not open it) */
        int other = init_flags & (CLONE_NEWIPC | CLONE_NEWUTS);
        if (other && setns(init_fd, other) != 0)
            snprintf(failure, sizeof failure, ES_PREFIX "cannot enter the job's namespaces (setns: %s)",
                     strerror(errno));
        close(init_fd);
        init_fd = -1;
    } else if (dir >= 0) {
        /* without "pid": the ipc and uts namespaces bound in the pin */
        int pidns = 0;
        char why[ES_MSG_MAX - sizeof ES_PREFIX];
        if (es_join_isolation(dir, pin, &pidns, why, sizeof why) != 0)
            snprintf(failure, sizeof failure, ES_PREFIX "%s", why);
    }
    if (dir >= 0)
        close(dir);
    if (failure[0]) {
        failure_code = ENVSCHED_EXIT_SETUP_FAILED;
        slurm_info("%s [%s]", failure, pin);
        if (fd >= 0)
            close(fd);
        return 0;
    }
    if (users >= 0) {
        /* a user's own view (a user image: its namespace is owned by the user's own user
         * namespace): root only opens it here (the pin is root's); the task enters it as the user
         * in task_init, and root never walks a tree the user controls */
        userns_fd = users;
        pin_fd = fd;
        return 0;
    }
    if (users == -2) {
        int err = errno;
        snprintf(failure, sizeof failure, ES_PREFIX "cannot enter the prepared environment (%s: %s)",
                 "NS_GET_USERNS", strerror(err));
        failure_code = ENVSCHED_EXIT_SETUP_FAILED;
        slurm_info("%s [%s]", failure, pin);
        close(fd);
        return 0;
    }
    if (fd < 0 || setns(fd, CLONE_NEWNS) != 0) {
        int err = errno;
        snprintf(failure, sizeof failure, ES_PREFIX "cannot enter the prepared environment (%s: %s)",
                 fd < 0 ? "open" : "setns", strerror(err));
        failure_code = ENVSCHED_EXIT_SETUP_FAILED;
        slurm_info("%s [%s]", failure, pin);
    }
    if (fd >= 0)
        close(fd);
    return 0;
}

/* `line` from the node's first task, on its stderr (srun's stderr or the batch job's output file):
 * once per node, as one write so that the line stays whole. */
static void tell_user(spank_t sp, char *line)
{
    int task = 0;

    if (spank_get_item(sp, S_TASK_ID, &task) != ESPANK_SUCCESS || task == 0) {
        size_t len = strlen(line);
        line[len] = '\n';                     /* the buffers are ES_MSG_MAX, filled by snprintf */
        ssize_t written = write(STDERR_FILENO, line, len + 1);
        (void)written;                        /* nowhere left to say it otherwise */
        line[len] = '\0';
    }
}

/* The refusal: its line once per node, and every task ends here with the refusal's code, before
 * exec. */
static void refuse_task(spank_t sp)
{
    tell_user(sp, failure);
    _exit(failure_code ? failure_code : ENVSCHED_EXIT_INTERNAL);
}

/* srun --multi-prog on Slurm before 23.11: each task runs its own line of the file srun sent as the
 * job argv's second element, parsed by slurmstepd into the task's own argv (slurmstepd_job.c:
 * multi_prog_get_argv), so the job argv ([FILE, its text, ...]) is not what the tasks run and
 * replacing its first element would reach none of them. Told apart from an ordinary command by the
 * text (every line blank, a comment or "RANKS PROGRAM ...") and by FILE, which is no program. */
static int multi_prog(spank_t sp, int argc, char **argv, int *launched)
{
    char found[PATH_MAX], path[8192];
    int lines = 0, through = 0;
    size_t len = launcher.argc > 0 ? strlen(launcher.argv[0]) : 0;

    if (argc < 2 || argv[1] == NULL || getenv_job(sp, "PATH", path, sizeof path) != 0)
        return 0;
    const char *program = es_launch_resolve(argv[0], path, found, sizeof found);
    if (access(program, X_OK) == 0)
        return 0;
    for (const char *l = argv[1]; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        l += strspn(l, " \t");
        if (*l == '\n' || *l == '#')
            continue;
        size_t ranks = strspn(l, "0123456789,-*");
        if (ranks == 0 || (l[ranks] != ' ' && l[ranks] != '\t'))
            return 0;
        const char *rest = l + ranks + strspn(l + ranks, " \t");
        if (*rest == '\0' || *rest == '\n')
            return 0;
        lines++;
        /* a line whose program is the launcher itself: the user put it in front already */
        through += len && strncmp(rest, launcher.argv[0], len) == 0 && strchr(" \t\n", rest[len]) && rest[len];
    }
    if (launched)
        *launched = lines > 0 && through == lines;
    return lines > 0;
}

/* The environment's launcher: the task runs as launcher ARGS... + its own argv (inside the view:
 * we are in it, as the user). Slurm 23.11 and later prepend it to the task's argv
 * (spank_prepend_task_argv, looked up at run time: envsched_spank.h; not tested here, Debian 12 has
 * 22.05), after the task's program became its path in the view (the task's argv is slurmstepd's job
 * argv but with --multi-prog, whose programs reach the launcher as the file names them). Before,
 * only slurmstepd's job argv is ours to change: its first element becomes the stub launch.c binds
 * into every view
 * (ES_LAUNCH_STUB, launch_stub.c), which learns the launcher and the task's own argv[0] from the
 * job environment, finds that program in the job's PATH as slurmstepd would have, and execs the
 * launcher. slurmstepd applies the user's limits and execs the stub (task.c exec_task): the stub's
 * path is absolute, so nothing is looked up in PATH for it. The batch script runs through the
 * launcher too (its argv[0] is the script's path in the spool). Not handled before 23.11: srun
 * --multi-prog, unless every line of its file runs the launcher itself (else the step is refused
 * in one line, above: never run without it) and srun --bcast=DIR/ (the program's name is made from
 * DIR after task_init). */
static void use_launcher(spank_t sp)
{
    int argc = 0, task = 0;
    char **argv = NULL;
    static char stub[] = ES_LAUNCH_STUB;     /* slurmstepd may write argv[0] (--bcast): not a literal */

    if (spank_prepend_task_argv != NULL) {
        char path[8192], found[PATH_MAX], *copy;
        if (spank_get_item(sp, S_JOB_ARGV, &argc, &argv) == ESPANK_SUCCESS && argc >= 1 && argv != NULL &&
            argv[0] != NULL && !multi_prog(sp, argc, argv, NULL) && getenv_job(sp, "PATH", path, sizeof path) == 0 &&
            es_launch_resolve(argv[0], path, found, sizeof found) == found && (copy = strdup(found)) != NULL)
            argv[0] = copy;                  /* this task's copy of slurmstepd's job argv */
        if (spank_prepend_task_argv(sp, launcher.argc, (const char **)launcher.argv) != ESPANK_SUCCESS) {
            fail(ENVSCHED_EXIT_SETUP_FAILED, ES_PREFIX "cannot start the task through the launcher %s", launcher.argv[0]);
            refuse_task(sp);
        }
        return;
    }
    if (spank_get_item(sp, S_JOB_ARGV, &argc, &argv) != ESPANK_SUCCESS || argc < 1 || argv == NULL || argv[0] == NULL) {
        fail(ENVSCHED_EXIT_INTERNAL, ES_PREFIX "cannot read the task's command to start it through the launcher %s",
             launcher.argv[0]);
        refuse_task(sp);
    }
    int launched = 0;
    if (multi_prog(sp, argc, argv, &launched)) {
        if (launched)
            return;                          /* every line runs the launcher itself */
        /* never without the launcher (another environment than the one the job asked for) */
        snprintf(failure, sizeof failure, ES_PREFIX "srun --multi-prog: on this Slurm (before 23.11) the "
                 "environment's launcher cannot be put in front of the file's programs: name it in every line "
                 "(RANKS %s PROGRAM ...)", launcher.argv[0]);
        failure_code = ENVSCHED_EXIT_REFUSED;
        refuse_task(sp);
    }
    if (access(stub, X_OK) != 0) {
        fail(ENVSCHED_EXIT_SETUP_FAILED, ES_PREFIX "the environment's launcher needs envsched-launch beside the "
             "plugin on this node, and it is not in the view (the node's slurmd log says why)%s", "");
        refuse_task(sp);
    }
    size_t cap = 64;
    for (int i = 0; i < launcher.argc; i++)
        cap += strlen(launcher.argv[i]) + 12;
    cap += strlen(argv[0]) + 12;
    char *value = malloc(cap), *fields[ES_LAUNCH_MAX_ARGS + 1];
    for (int i = 0; i < launcher.argc; i++)
        fields[i] = launcher.argv[i];
    fields[launcher.argc] = argv[0];
    if (spank_get_item(sp, S_TASK_ID, &task) != ESPANK_SUCCESS)
        task = 0;
    if (value == NULL || es_launch_encode(value, cap, task == 0, fields, launcher.argc + 1) < 0 ||
        spank_setenv(sp, ES_LAUNCH_VAR, value, 1) != ESPANK_SUCCESS) {
        fail(ENVSCHED_EXIT_SETUP_FAILED, ES_PREFIX "cannot start the task through the launcher %s", launcher.argv[0]);
        refuse_task(sp);
    }
    free(value);
    argv[0] = stub;                          /* this task's copy of slurmstepd's job argv */
}

int es_remote_task_init(spank_t sp)
{
    if (failure[0])
        refuse_task(sp);
    if (pin_fd >= 0) {                    /* as the user: the user namespace, then the view */
        if (setns(userns_fd, CLONE_NEWUSER) != 0 || setns(pin_fd, CLONE_NEWNS) != 0) {
            int err = errno;
            snprintf(failure, sizeof failure, ES_PREFIX "cannot enter your image's environment (setns: %s)",
                     strerror(err));
            failure_code = ENVSCHED_EXIT_SETUP_FAILED;
            refuse_task(sp);
        }
        close(userns_fd);
        close(pin_fd);
        userns_fd = pin_fd = -1;
    }
    if (pin[0] && !((task_cwd[0] && chdir(task_cwd) == 0) || (home[0] && chdir(home) == 0) ||
                    chdir("/") == 0)) {
        fail(ENVSCHED_EXIT_SETUP_FAILED, ES_PREFIX "no usable working directory in the environment%s", "");
        refuse_task(sp);
    }
    /* on_error = "default": the job runs, in the site default, and the user is told so, once per
     * node like a refusal (a step that started runs; nothing of Slurm's is added) */
    if (warning[0])
        tell_user(sp, warning);
    if (launcher.argc > 0)
        use_launcher(sp);
    return 0;
}

/* The pin's directory (the `pin` line names its mnt), opened O_NOFOLLOW; -1 if none. */
static int open_pin_dir(void)
{
    char dir[PATH_MAX];
    char *slash;

    snprintf(dir, sizeof dir, "%s", pin);
    if ((slash = strrchr(dir, '/')) == NULL || strcmp(slash, "/mnt") != 0)
        return -1;
    *slash = '\0';
    return open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* user_init, slurmstepd's main thread: with a PID namespace (its init named in pin/init), the tasks this
 * thread forks next start in it (setns(CLONE_NEWPID) changes only where its children go). The
 * tasks stay slurmstepd's children: its signals, process group and exit status reach them as
 * without a namespace, and no process per task is added. Back to slurmstepd's own namespace
 * after the forks (es_remote_tasks_forked), before the thread makes another thread (the kernel
 * refuses CLONE_THREAD while the two differ). user_init runs with the user's effective uid: root's
 * is taken back for the setns in this thread only (the raw syscall; glibc's seteuid would change
 * every thread of slurmstepd). */
static void enter_pid_namespace(void)
{
    if (failure[0] || !pin[0])
        return;
    uid_t euid = geteuid();
    if (syscall(SYS_setresuid, -1, 0, -1) != 0) {
        fail(ENVSCHED_EXIT_SETUP_FAILED, ES_PREFIX "cannot enter the job's process namespace (%s)", strerror(errno));
        return;
    }
    int dir = open_pin_dir(), fd = -2, flags = 0;
    char why[ES_MSG_MAX - sizeof ES_PREFIX];
    if (dir >= 0 && (fd = es_open_init(dir, &flags, why, sizeof why)) == -1) {
        /* gone: "the job's process namespace on this node has ended" */
        fail(ENVSCHED_EXIT_SETUP_FAILED, ES_PREFIX "the job's process namespace on this node has ended (its "
             "init is gone); the job does not run here%s", "");
        slurm_info("%s [%s: %s]", failure, pin, why);
    }
    if (fd >= 0 && (flags & CLONE_NEWPID)) {
        host_pidns = open("/proc/thread-self/ns/pid", O_RDONLY | O_CLOEXEC);
        if (host_pidns < 0 || setns(fd, CLONE_NEWPID) != 0) {
            fail(ENVSCHED_EXIT_SETUP_FAILED, ES_PREFIX "cannot enter the job's process namespace (%s)",
                 strerror(errno));
            if (host_pidns >= 0)
                close(host_pidns);
            host_pidns = -1;
        }
    }
    if (fd >= 0 && !failure[0]) {
        init_fd = fd;                               /* the tasks inherit it: their ipc and uts */
        init_flags = flags;
    } else if (fd >= 0)
        close(fd);
    if (dir >= 0)
        close(dir);
    if (syscall(SYS_setresuid, -1, euid, -1) != 0)
        _exit(ENVSCHED_EXIT_INTERNAL);              /* never leave this thread root by mistake */
}

/* task_post_fork (every task forked) and exit: slurmstepd's main thread goes back to its own PID
 * namespace. */
int es_remote_tasks_forked(spank_t sp)
{
    (void)sp;
    if (init_fd >= 0) {                             /* the tasks have their copies */
        close(init_fd);
        init_fd = -1;
    }
    if (host_pidns < 0)
        return 0;
    uid_t euid = geteuid();
    if (euid != 0 && syscall(SYS_setresuid, -1, 0, -1) != 0)
        return 0;
    if (setns(host_pidns, CLONE_NEWPID) != 0)
        slurm_info(ES_PREFIX "cannot return to slurmstepd's PID namespace: %s", strerror(errno));
    if (euid != 0 && syscall(SYS_setresuid, -1, euid, -1) != 0)
        _exit(ENVSCHED_EXIT_INTERNAL);
    close(host_pidns);
    host_pidns = -1;
    return 0;
}
