/* An environment's launcher (policy key `launcher`, e.g. McKernel's mcexec): every task's payload
 * runs as `launcher ARGS... PROGRAM ARGS...` inside the view, the launcher's program an absolute
 * path of the view's, exec'd with execv. Shared by the Grid Engine and Torque starters, the OpenPBS
 * joiner, the Slurm plugin and its stub (plugins/slurm-spank/launch_stub.c); the Python side is
 * src/envsched/enter.py (launched_argv). See es_launch.c. */
#ifndef ES_LAUNCH_H
#define ES_LAUNCH_H

#include <stddef.h>

#define ES_LAUNCH_MAX_ARGS 64                  /* arguments of the launcher itself            */
#define ES_LAUNCH_BUF 16384                    /* their bytes (the whole shim is smaller)     */
/* Slurm 22.05 (no spank_prepend_task_argv): the static stub the plugin binds into every view at
 * this path, and the variable that tells it the launcher and the task's own program */
#define ES_LAUNCH_STUB "/.envsched/bin/envsched-launch"
#define ES_LAUNCH_VAR "ENVSCHED_LAUNCH"

struct es_launcher {
    int argc;                                  /* 0: the environment has no launcher          */
    char *argv[ES_LAUNCH_MAX_ARGS + 1];        /* NULL-terminated, pointing into buf          */
    char buf[ES_LAUNCH_BUF];
};

/* The "launcher ARG" lines of the resolver's shim text (src/envsched/shim.py), in order. 0, or -1
 * when there are more than ES_LAUNCH_MAX_ARGS or they do not fit (l->argc is then 0), or when the
 * first is not an absolute path. */
int es_launcher_parse(const char *shim, struct es_launcher *l);

/* The program a task names, as execvp would find it: a name with a '/' as it is; a bare name is
 * looked up in path_env (the job's PATH, inside the view; NULL: execvp's default /bin:/usr/bin), the
 * first candidate that exists, is not a directory and is executable for us; not found: the name as
 * it is (the launcher says so). The result is name itself or buf. */
const char *es_launch_resolve(const char *name, const char *path_env, char *buf, size_t cap);

/* argv for execv(l->argv[0], ...): the launcher's arguments, then `program`, then args[0..nargs)
 * (the task's own arguments after its argv[0]); malloc'd (the strings are not copied), NULL when
 * out of memory. */
char **es_launch_argv(const struct es_launcher *l, const char *program, char *const *args, int nargs);

/* The exit code when the launcher cannot be executed (errno err): the environment is broken (69)
 * when the program is missing, not executable or not a program (ENOENT, EACCES, ENOEXEC, ENOTDIR,
 * ELOOP, EPERM), else 126 (E2BIG, ENOMEM, ...). src/envsched/enter.py: LAUNCHER_BROKEN. */
int es_launch_exit_code(int err);

/* ES_LAUNCH_VAR's value (Slurm 22.05, plugin -> stub): "1:TELL:N:" then N fields "LEN:BYTES"
 * (LEN in decimal): the launcher's arguments, then the task's own argv[0]. TELL 1: the node's first
 * task, which tells the user when the launcher cannot be executed. encode: the length written, -1
 * when it does not fit in cap. decode: parses text strictly into out (cap bytes, at least
 * strlen(text) + 1), argv (max + 1 slots) pointing into it, NULL-terminated; the entry count, or -1
 * on anything malformed. The variable is the job's, so a user can forge it: the stub
 * then runs what the user asked for, as the user, which they can do anyway. */
int es_launch_encode(char *out, size_t cap, int tell, char *const *args, int n);
int es_launch_decode(const char *text, char *out, size_t cap, char **argv, int max, int *tell);

#endif
