/* What the `chos` and `envsched` fronts share: see front.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/envsched_exit.h"
#include "../common/es_envop.h"
#include "../common/es_join.h"
#include "../common/es_launch.h"
#include "../common/es_trust.h"
#include "front.h"

#define PREFIX "envsched: "                           /* cli/common.py PREFIX */

void es_front_fail(int code, const char *fmt, ...)
{
    va_list ap;
    fputs(PREFIX, stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

/* The interpreter: ES_FRONT_PYTHON, or $ENVSCHED_CHOS_PYTHON (a checkout's venv) when absolute and,
 * for root, a program root may run (es_trusted_path: its path root's, not writable by others), as
 * the shims judge the resolver they run: a variable never makes root run another user's program. */
static const char *interpreter(void)
{
    const char *py = getenv("ENVSCHED_CHOS_PYTHON");
    char err[512];
    if (py == NULL || py[0] != '/')
        return ES_FRONT_PYTHON;
    if (getuid() == 0 || geteuid() == 0) {
        /* a venv's python is a link (the venv is found beside the name it runs as): the directory
         * holding the link, and the program the link leads to */
        char dir[PATH_MAX], *real = realpath(py, NULL);
        snprintf(dir, sizeof dir, "%s", py);
        *strrchr(dir, '/') = '\0';
        int ok = real != NULL && es_trusted_path(dir[0] ? dir : "/", err, sizeof err) == 0 &&
                 es_trusted_path(real, err, sizeof err) == 0;
        if (real == NULL)
            snprintf(err, sizeof err, "%s: %s", py, strerror(errno));
        free(real);
        if (!ok) {
            fprintf(stderr, PREFIX "ENVSCHED_CHOS_PYTHON ignored: %s\n", err);
            return ES_FRONT_PYTHON;
        }
    }
    return py;
}

void es_front_python(char **argv, const char *tool, const char *why)
{
    const char *py = interpreter();
    char module[64];
    int argc = 0;
    while (argv[argc])
        argc++;
    char **args = calloc((size_t)argc + 4, sizeof *args);
    if (args == NULL)
        es_front_fail(ENVSCHED_EXIT_INTERNAL, "out of memory");
    if (why && getenv("ENVSCHED_CHOS_DEBUG"))
        fprintf(stderr, "%s: run cache: %s\n", tool, why);
    snprintf(module, sizeof module, "envsched.cli.%s", tool);
    args[0] = (char *)py;
    args[1] = "-I";
    args[2] = "-m";
    args[3] = module;
    for (int i = 1; i < argc; i++)
        args[i + 3] = argv[i];
    execv(py, args);
    es_front_fail(ENVSCHED_EXIT_EXEC_FAILED, "cannot run %s: %s", py, strerror(errno));
}

static int append(char *buf, size_t *len, size_t cap, const char *text)
{
    int w = snprintf(buf + *len, cap - *len, "%s\n", text);
    if (w < 0 || (size_t)w >= cap - *len)
        return -1;
    *len += (size_t)w;
    return 0;
}

/* es_check's `other`: the lines runcache.py writes after the checks */
static int entry_line(char *line, void *arg)
{
    struct es_front_entry *e = arg;
    if (!strncmp(line, "source\t", 7) && line[7] == '/') {
        e->plan.source = line + 7;
        return 0;
    }
    if (!strncmp(line, "environment\t", 12)) {
        e->env = line + 12;
        return 0;
    }
    if (!strncmp(line, "log\t", 4)) {
        e->log_file = line + 4;
        return 0;
    }
    if (!strncmp(line, "mount\t", 6))
        return es_view_add(&e->plan, line + 6);
    if (!strncmp(line, "login\t", 6) || !strcmp(line, "login")) {
        if (append(e->login, &e->login_len, sizeof e->login, line[5] ? line + 6 : "") != 0)
            return -1;
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
    if (!strncmp(line, "shim\t", 5))
        return append(e->shim, &e->shim_len, sizeof e->shim, line + 5);
    return -1;                                   /* a line this front does not know: Python's */
}

int es_front_entry(const char *path, uid_t owner, const char *header, const char *inputs, const struct es_user *u,
                   struct es_front_entry *e, char *why, size_t whylen)
{
    static char text[65536];
    memset(e, 0, sizeof *e);
    if (es_entry_read(path, owner, text, sizeof text) <= 0) {
        snprintf(why, whylen, "no entry %s", path);
        return -1;
    }
    struct es_check c = {header, inputs, u, 0, 0, entry_line, e};
    if (es_entry_check(text, &c, why, whylen) != ES_CACHE_HIT)
        return -1;
    if (e->plan.source == NULL || e->env == NULL || e->plan.nops == 0 ||
        e->plan.ops[e->plan.nops - 1].kind != ES_VIEW_PIVOT_ROOT) {
        snprintf(why, whylen, "an entry without a whole plan");
        return -1;
    }
    return 0;
}

/* The env operations of the entry's shim lines on our environment (enter.py apply_env_ops). */
static int apply_env(const char *shim)
{
    char line[4096];
    for (const char *p = shim; *p; p = strchr(p, '\n') + 1) {
        size_t len = strcspn(p, "\n");
        struct es_envop op;
        if (strncmp(p, "env ", 4) != 0)
            continue;
        if (len >= sizeof line)
            return -1;
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

/* As root: the user's groups, then gid and uid for good (es_drop_privileges: checked, no way
 * back, no_new_privs); HOME, USER and LOGNAME the user's (enter.py finish_and_exec). */
static void become(const struct es_user *u)
{
    char err[256];
    if (setgroups((size_t)u->ngids, u->gids) != 0)
        es_front_fail(ENVSCHED_EXIT_SETUP_FAILED, "dropping privileges to %s failed: %s", u->name, strerror(errno));
    if (es_drop_privileges(u->uid, u->gid, err, sizeof err) != 0)
        es_front_fail(ENVSCHED_EXIT_SETUP_FAILED, "dropping privileges to %s failed: %s", u->name, err);
    if (setenv("HOME", u->home, 1) != 0 || setenv("USER", u->name, 1) != 0 || setenv("LOGNAME", u->name, 1) != 0)
        es_front_fail(ENVSCHED_EXIT_SETUP_FAILED, "out of memory");
}

void es_front_enter(struct es_front_entry *e, char **command, int unprivileged, const struct es_user *u)
{
    char cwd[PATH_MAX], err[PATH_MAX + 256];
    struct es_launcher launcher;
    int have_cwd = getcwd(cwd, sizeof cwd) != NULL;

    if (es_launcher_parse(e->shim, &launcher) != 0)
        es_front_fail(ENVSCHED_EXIT_SETUP_FAILED, "the launcher of environment %s is malformed", e->env);
    /* 1. the view */
    int code = es_view_build(&e->plan, unprivileged, err, sizeof err);
    if (code != 0)
        es_front_fail(code, "%s", err);
    /*    the launcher every task runs through must be a program of the view's (view.py check_launcher) */
    if (launcher.argc > 0) {
        struct stat st;
        if (stat(launcher.argv[0], &st) != 0)
            es_front_fail(ENVSCHED_EXIT_ENV_BROKEN, "the launcher %s of environment %s is not in it (%s)",
                          launcher.argv[0], e->env, strerror(errno));
        if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111))
            es_front_fail(ENVSCHED_EXIT_ENV_BROKEN, "the launcher %s of environment %s is not an executable file",
                          launcher.argv[0], e->env);
    }
    /* 2. as root: become the user */
    if (!unprivileged)
        become(u);
    /* 3. chdir (as the user: their permissions decide): the caller's directory, else the plan's */
    int moved = have_cwd && chdir(cwd) == 0;
    for (int k = 0; !moved && k < e->nchdir; k++)
        moved = chdir(e->chdir[k]) == 0;
    if (!moved)
        es_front_fail(ENVSCHED_EXIT_SETUP_FAILED, "no usable working directory in the view");
    /* 4. the environment's env operations */
    if (apply_env(e->shim) != 0)
        es_front_fail(ENVSCHED_EXIT_SETUP_FAILED, "cannot apply the environment's variables");
    /* 5. no_new_privs (root's path set it when dropping) */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        es_front_fail(ENVSCHED_EXIT_SETUP_FAILED, "prctl(PR_SET_NO_NEW_PRIVS) failed: %s", strerror(errno));
    /* 6. exec, through the launcher if the environment has one */
    if (launcher.argc > 0) {
        char buf[PATH_MAX];
        int nargs = 0;
        while (command[1 + nargs])
            nargs++;
        const char *program = es_launch_resolve(command[0], getenv("PATH"), buf, sizeof buf);
        char **args = es_launch_argv(&launcher, program, command + 1, nargs);
        if (args == NULL)
            es_front_fail(ENVSCHED_EXIT_SETUP_FAILED, "out of memory");
        execv(args[0], args);
        int errsv = errno;
        es_front_fail(es_launch_exit_code(errsv), "cannot execute the launcher %s: %s", args[0], strerror(errsv));
    }
    execvp(command[0], command);
    if (errno == ENOENT)
        es_front_fail(ENVSCHED_EXIT_NOT_FOUND, "%s: command not found in environment %s", command[0], e->env);
    es_front_fail(ENVSCHED_EXIT_EXEC_FAILED, "%s: cannot execute in environment %s: %s", command[0], e->env,
                  strerror(errno));
}
