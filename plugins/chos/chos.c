/* `chos`: the user's command. This front runs `chos run NAME [--] COMMAND...` without starting
 * Python when the user's run cache (src/envsched/runcache.py) holds the plan the resolver made for
 * exactly this request, every input of it unchanged; everything else, and any doubt, is the Python
 * command's (`PYTHON -I -m envsched.cli.chos ARGS...`, the same arguments), which decides and
 * writes the entry for next time.
 *
 * It is an ordinary program run by the user, not set-user-ID: the entry is the user's own file and
 * the view is built in a user namespace of the user's (es_view.c), so an entry the user edits can
 * give them nothing they could not do with unshare(1) themselves. It is still held to the resolver's
 * answer: each input the entry records is checked here as ../common/es_cache.c checks the node's
 * decision cache (the policy file's stat, the directories above it, the user and their groups, the
 * tree's stat and top directories, its version stamps), so a policy edit, a group removed or a tree
 * changed sends the next run to Python, which decides again.
 *
 * What it does on a hit, in order (each step is enter.py's finish_and_exec or view.py's):
 *   1. the view, in this process (es_view_build);
 *   2. chdir: the caller's directory if the view has it, else the plan's candidates (home, "/");
 *   3. the plan's env operations on our environment (CHOS, CHOS_DIGEST, the policy's);
 *   4. no_new_privs;
 *   5. exec COMMAND (through the environment's launcher, if it has one), found in the view's PATH.
 * Exit codes and messages are enter.py's: 127 command not found, 126 cannot execute, 69/71 a view
 * that cannot be built (the entry was right when written: the tree changed since). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "../common/envsched_exit.h"
#include "../common/es_cache.h"
#include "../common/es_envop.h"
#include "../common/es_launch.h"
#include "../common/es_view.h"

#ifndef ES_CHOS_PYTHON
#define ES_CHOS_PYTHON "/usr/bin/python3"
#endif
#define DEFAULT_POLICY "/etc/envsched/policy.toml"    /* policy/model.py DEFAULT_POLICY_PATH */
#define HEADER "envsched-run 1"                       /* runcache.py HEADER */
#define PREFIX "envsched: "                           /* cli/common.py PREFIX */

extern char **environ;

/* What the entry holds beyond es_entry_check's lines (runcache.py). */
struct entry {
    struct es_view_plan plan;
    char *env;                  /* the environment's name */
    char *chdir[8];             /* the plan's directories after the caller's own (home, "/") */
    int nchdir;
    char shim[16384];           /* "env ..." and "launcher ..." lines (shim.py's protocol) */
    size_t shim_len;
    char login[16384];          /* the login shells' snippet, its lines joined again */
    size_t login_len;
    int ended_plan;
};

static int entry_line(char *line, void *arg)
{
    struct entry *e = arg;
    if (!strncmp(line, "source\t", 7) && line[7] == '/') {
        e->plan.source = line + 7;
        return 0;
    }
    if (!strncmp(line, "environment\t", 12)) {
        e->env = line + 12;
        return 0;
    }
    if (!strncmp(line, "mount\t", 6))
        return es_view_add(&e->plan, line + 6);
    if (!strncmp(line, "login\t", 6) || !strcmp(line, "login")) {
        const char *text = line[5] ? line + 6 : "";
        int w = snprintf(e->login + e->login_len, sizeof e->login - e->login_len, "%s\n", text);
        if (w < 0 || (size_t)w >= sizeof e->login - e->login_len)
            return -1;
        e->login_len += (size_t)w;
        e->plan.login_text = e->login;
        return 0;
    }
    if (!strncmp(line, "chdir\t", 6)) {
        for (char *save = NULL, *t = strtok_r(line + 6, "\t", &save); t; t = strtok_r(NULL, "\t", &save)) {
            if (e->nchdir == 8 || t[0] != '/')
                return -1;
            e->chdir[e->nchdir++] = t;
        }
        return 0;
    }
    if (!strncmp(line, "shim\t", 5)) {
        int w = snprintf(e->shim + e->shim_len, sizeof e->shim - e->shim_len, "%s\n", line + 5);
        if (w < 0 || (size_t)w >= sizeof e->shim - e->shim_len)
            return -1;
        e->shim_len += (size_t)w;
        return 0;
    }
    return -1;                                   /* a line this front does not know: Python's */
}

static void python(char **argv, const char *why)
{
    const char *py = getenv("ENVSCHED_CHOS_PYTHON");
    int argc = 0;
    while (argv[argc])
        argc++;
    char **args = calloc((size_t)argc + 4, sizeof *args);
    if (py == NULL || py[0] != '/')
        py = ES_CHOS_PYTHON;
    if (args == NULL) {
        fprintf(stderr, PREFIX "out of memory\n");
        exit(ENVSCHED_EXIT_INTERNAL);
    }
    if (why && getenv("ENVSCHED_CHOS_DEBUG"))
        fprintf(stderr, "chos: run cache: %s\n", why);
    args[0] = (char *)py;
    args[1] = "-I";
    args[2] = "-m";
    args[3] = "envsched.cli.chos";
    for (int i = 1; i < argc; i++)
        args[i + 3] = argv[i];
    execv(py, args);
    fprintf(stderr, PREFIX "cannot run %s: %s\n", py, strerror(errno));
    exit(ENVSCHED_EXIT_EXEC_FAILED);
}

/* The env operations of the entry's shim lines on our environment (enter.py apply_env_ops). */
static int apply_env(const char *shim)
{
    char line[4096];
    for (const char *p = shim; *p; p = strchr(p, '\n') + 1) {
        size_t len = strcspn(p, "\n");
        struct es_envop op;
        if (strncmp(p, "env ", 4) != 0 || len >= sizeof line) {
            if (!strncmp(p, "env ", 4))
                return -1;
            continue;
        }
        memcpy(line, p + 4, len - 4);
        line[len - 4] = '\0';
        if (es_envop_parse(line, &op) != 0)
            return -1;
        if (!strcmp(op.action, "unset")) {
            unsetenv(op.name);
            continue;
        }
        char *value = es_envop_value(&op, getenv(op.name));
        if (value == NULL || setenv(op.name, value, 1) != 0)
            return -1;
        free(value);
    }
    return 0;
}

static void fail(int code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void fail(int code, const char *fmt, ...)
{
    va_list ap;
    fputs(PREFIX, stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

int main(int argc, char **argv)
{
    static struct es_user u;
    static char text[65536];
    static struct entry e;
    char inputs[PATH_MAX + 1024], path[PATH_MAX + 64], name[17], why[512], err[PATH_MAX + 256];
    char cwd[PATH_MAX];
    const char *policy = NULL, *chos = getenv("CHOS");
    uid_t uid = getuid();
    int i = 1;

    (void)argc;
    /* the fast path is a user's own `chos run NAME [--] COMMAND...`, nothing else */
    if (uid == 0 || geteuid() != uid || getegid() != getgid())
        python(argv, NULL);
    if (argv[i] && !strcmp(argv[i], "--policy") && argv[i + 1]) {
        policy = argv[i + 1];
        i += 2;
    }
    if (!argv[i] || strcmp(argv[i], "run") || !argv[i + 1] || argv[i + 1][0] == '-')
        python(argv, NULL);
    const char *env_name = argv[i + 1];
    char **command = argv + i + 2;
    if (*command && !strcmp(*command, "--"))
        command++;
    if (!*command)
        python(argv, "no command");
    if (policy == NULL)
        policy = getenv("ENVSCHED_POLICY") && getenv("ENVSCHED_POLICY")[0] ? getenv("ENVSCHED_POLICY")
                                                                          : DEFAULT_POLICY;
    if (policy[0] != '/' || strpbrk(env_name, "\t\n\r") || (chos && strpbrk(chos, "\t\n\r")) ||
        strpbrk(policy, "\t\n\r"))
        python(argv, "a value the cache does not key on");
    if (getenv("ENVSCHED_NO_RUN_CACHE"))
        python(argv, "ENVSCHED_NO_RUN_CACHE");
    /* the entry: the user's, for exactly these inputs (runcache.py inputs_line) */
    if (es_user_lookup(uid, &u) != 0)
        python(argv, "user lookup");
    snprintf(inputs, sizeof inputs, "uid=%u\tname=%s\tchos=%s\tpolicy=%s", (unsigned)uid, env_name,
             chos ? chos : "", policy);
    es_cache_name(inputs, name);
    snprintf(path, sizeof path, "%s/.cache/envsched/run/%s", u.home, name);
    if (es_entry_read(path, uid, text, sizeof text) <= 0)
        python(argv, "no entry");
    struct es_check c = {HEADER, inputs, &u, 0, 0, entry_line, &e};
    if (es_entry_check(text, &c, why, sizeof why) != ES_CACHE_HIT)
        python(argv, why);
    if (e.plan.source == NULL || e.env == NULL || e.plan.nops == 0 ||
        e.plan.ops[e.plan.nops - 1].kind != ES_VIEW_PIVOT_ROOT)
        python(argv, "an entry without a whole plan");
    struct es_launcher launcher;
    if (es_launcher_parse(e.shim, &launcher) != 0)
        python(argv, "launcher");
    int have_cwd = getcwd(cwd, sizeof cwd) != NULL;
    /* the admin log's line, as the resolver's (audit.py: syslog, the user cannot write log_file) */
    openlog("envsched", LOG_PID, LOG_DAEMON);
    syslog(LOG_INFO, "event=decided user=%s env=%s source=option path=%s by=cache", u.name, e.env, e.plan.source);
    closelog();
    /* 1. the view */
    int code = es_view_build(&e.plan, 1, err, sizeof err);
    if (code != 0)
        fail(code, "%s", err);
    /* the launcher every task runs through must be a program of the view's (view.py check_launcher) */
    if (launcher.argc > 0) {
        struct stat st;
        if (stat(launcher.argv[0], &st) != 0)
            fail(ENVSCHED_EXIT_ENV_BROKEN, "the launcher %s of environment %s is not in it (%s)", launcher.argv[0],
                 e.env, strerror(errno));
        if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111))
            fail(ENVSCHED_EXIT_ENV_BROKEN, "the launcher %s of environment %s is not an executable file",
                 launcher.argv[0], e.env);
    }
    /* 2. chdir: the caller's directory, else the plan's */
    int moved = have_cwd && chdir(cwd) == 0;
    for (int k = 0; !moved && k < e.nchdir; k++)
        moved = chdir(e.chdir[k]) == 0;
    if (!moved)
        fail(ENVSCHED_EXIT_SETUP_FAILED, "no usable working directory in the view");
    /* 3. the environment's env operations */
    if (apply_env(e.shim) != 0)
        fail(ENVSCHED_EXIT_SETUP_FAILED, "cannot apply the environment's variables");
    /* 4. no_new_privs */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        fail(ENVSCHED_EXIT_SETUP_FAILED, "prctl(PR_SET_NO_NEW_PRIVS) failed: %s", strerror(errno));
    /* 5. exec, through the launcher if the environment has one */
    if (launcher.argc > 0) {
        char buf[PATH_MAX];
        int nargs = 0;
        while (command[1 + nargs])
            nargs++;
        const char *program = es_launch_resolve(command[0], getenv("PATH"), buf, sizeof buf);
        char **args = es_launch_argv(&launcher, program, command + 1, nargs);
        if (args == NULL)
            fail(ENVSCHED_EXIT_SETUP_FAILED, "out of memory");
        execv(args[0], args);
        int errsv = errno;
        fprintf(stderr, PREFIX "cannot execute the launcher %s: %s\n", args[0], strerror(errsv));
        exit(es_launch_exit_code(errsv));
    }
    execvp(command[0], command);
    if (errno == ENOENT)
        fail(ENVSCHED_EXIT_NOT_FOUND, "%s: command not found in environment %s", command[0], e.env);
    fail(ENVSCHED_EXIT_EXEC_FAILED, "%s: cannot execute in environment %s: %s", command[0], e.env, strerror(errno));
    return ENVSCHED_EXIT_INTERNAL;
}
