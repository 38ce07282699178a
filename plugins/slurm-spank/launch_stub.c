/* envsched-launch: every task through the environment's launcher on Slurm before 23.11.
 *
 * SPANK before 23.11 has no spank_prepend_task_argv(): a plugin reaches only slurmstepd's job argv
 * (S_JOB_ARGV), an array it cannot grow. So for an environment with a `launcher`, the plugin's
 * task_init (remote.c, as the user, in the view) replaces the job argv's first element with this
 * program's path in the view (ES_LAUNCH_STUB) and puts the launcher's arguments and the task's own
 * argv[0] into the job environment (ES_LAUNCH_VAR, length-encoded: es_launch.c). slurmstepd then
 * execs us with the task's arguments; we
 *
 *   1. take and unset ES_LAUNCH_VAR (the payload never sees it), decoding it strictly;
 *   2. find the task's program as Slurm would have (exec_task: _build_path, after task_init and the
 *      task prologs): a bare name through the job's PATH, in the view;
 *   3. execv the launcher by its absolute path with [launcher args..., program, task args...].
 *
 * On failure one line on stderr from the node's first task ("envsched: cannot execute the launcher
 * X: reason"; the others stay quiet, as a refusal is told once per node) and an exit code of
 * ../common/envsched_exit.h (es_launch_exit_code). We run as the job's user with no_new_privs and
 * nothing but exec: a user who sets the variable themselves gets what they could run anyway.
 *
 * Built static (gcc -static-pie), so that it runs in every environment's userland: an old tree
 * with another C library, a busybox tree with none. The plugin binds it read-only, nosuid, nodev
 * into every view (config.c); nothing of the tree is used.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/envsched_exit.h"
#include "../common/es_launch.h"

#define VAR_MAX (1 << 20)

static int quit(int code, const char *what)
{
    fprintf(stderr, "envsched: %s\n", what);
    return code;
}

int main(int argc, char **argv)
{
    static struct es_launcher l;
    static char found[PATH_MAX];
    char *decoded[ES_LAUNCH_MAX_ARGS + 2];
    int tell = 0;
    const char *enc = getenv(ES_LAUNCH_VAR);

    if (enc == NULL)
        return quit(ENVSCHED_EXIT_USAGE, "envsched-launch: " ES_LAUNCH_VAR " is not set (the envsched Slurm "
                    "plugin starts this program for an environment's launcher)");
    size_t len = strnlen(enc, VAR_MAX + 1);
    char *out = len <= VAR_MAX ? malloc(len + 1) : NULL;
    int n = out ? es_launch_decode(enc, out, len + 1, decoded, ES_LAUNCH_MAX_ARGS + 1, &tell) : -1;
    unsetenv(ES_LAUNCH_VAR);                          /* decoded holds copies */
    if (n < 2)
        return quit(ENVSCHED_EXIT_INTERNAL, "envsched-launch: " ES_LAUNCH_VAR " is malformed");
    l.argc = n - 1;
    for (int i = 0; i < l.argc; i++)
        l.argv[i] = decoded[i];
    l.argv[l.argc] = NULL;
    if (l.argv[0][0] != '/')
        return quit(ENVSCHED_EXIT_INTERNAL, "envsched-launch: the launcher is not an absolute path");
    const char *program = es_launch_resolve(decoded[n - 1], getenv("PATH"), found, sizeof found);
    char **args = es_launch_argv(&l, program, argc > 1 ? argv + 1 : NULL, argc > 1 ? argc - 1 : 0);
    if (args == NULL)
        return quit(ENVSCHED_EXIT_INTERNAL, "envsched-launch: out of memory");
    execv(l.argv[0], args);
    int e = errno;
    if (tell)
        fprintf(stderr, "envsched: cannot execute the launcher %s: %s\n", l.argv[0], strerror(e));
    return es_launch_exit_code(e);
}
