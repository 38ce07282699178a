/* torque-starter: Torque's `$job_starter` with `$job_starter_run_privileged true`, stage 1.
 *
 * pbs_mom runs the job starter as ROOT with the JOB's environment (the user's `qsub -v`
 * variables included; ../../../docs/admin.md section 13 lists the contract and its sources).
 * A dynamically linked program started as root by root is not in glibc's secure mode: the
 * dynamic loader would honour the user's LD_PRELOAD / LD_LIBRARY_PATH and load the user's code
 * into a root process. So this stage is linked statically (no dynamic loader runs), calls no
 * NSS function (nothing is dlopen'ed), and does only this:
 *
 *   1. copy the job's environment, as execve gave it, into an anonymous memory file
 *   2. exec the real starter (torque-starter-core, beside this program) with a clean
 *      environment and the memory file's descriptor: `core --env-fd N -- ARGV...`
 *
 * The core gets the job's environment back from the descriptor and gives it to the job only
 * after dropping every privilege. The pid stays the same across both execs (the job's pid).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../common/envsched_exit.h"

extern char **environ;

static int fail(int code, const char *what)
{
    fprintf(stderr, "envsched: job starter: %s: %s\n", what, strerror(errno));
    return code;
}

int main(int argc, char **argv)
{
    char exe[PATH_MAX], core[PATH_MAX + 16], fdarg[16];
    char *clean_env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", NULL};
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);

    if (n <= 0)
        return fail(ENVSCHED_EXIT_SETUP_FAILED, "readlink /proc/self/exe");
    exe[n] = '\0';
    int fd = memfd_create("envsched-job-env", 0);       /* inherited by the core, which closes it */
    if (fd < 0)
        return fail(ENVSCHED_EXIT_SETUP_FAILED, "memfd_create");
    for (char **e = environ; e && *e; e++) {
        size_t len = strlen(*e) + 1;                     /* NAME=VALUE\0, as /proc/PID/environ */
        if (write(fd, *e, len) != (ssize_t)len)
            return fail(ENVSCHED_EXIT_SETUP_FAILED, "write the job's environment");
    }
    if (lseek(fd, 0, SEEK_SET) != 0)
        return fail(ENVSCHED_EXIT_SETUP_FAILED, "lseek");
    snprintf(core, sizeof core, "%s-core", exe);
    snprintf(fdarg, sizeof fdarg, "%d", fd);
    char **args = calloc((size_t)argc + 4, sizeof *args);
    if (args == NULL)
        return fail(ENVSCHED_EXIT_INTERNAL, "calloc");
    args[0] = core;
    args[1] = "--env-fd";
    args[2] = fdarg;
    args[3] = "--";
    for (int i = 1; i < argc; i++)
        args[3 + i] = argv[i];
    execve(core, args, clean_env);
    return fail(errno == ENOENT ? ENVSCHED_EXIT_NOT_FOUND : ENVSCHED_EXIT_EXEC_FAILED, core);
}
