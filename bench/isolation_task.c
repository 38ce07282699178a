/* Per-task cost of the isolation namespaces (bench/isolation_bench.py), timed inside a fresh child
 * each round, as the shims do it:
 *   slurm    a task of slurmstepd (plugins/slurm-spank/remote.c): opens the pin directory, enters
 *            ipc and uts through the init's pidfd that slurmstepd opened once per step and the task
 *            inherited (it was forked into the PID namespace already); a pin without an init: the
 *            binds es_join_isolation looks for
 *   starter  the Grid Engine, Torque and OpenPBS starters: es_join_isolation (the init's record,
 *            its pidfd and start time, one setns for all three)
 *   fork     the fork + exit + wait of one more process: a starter's job is its child in the PID
 *            namespace (on Slurm nothing is added)
 * isolation_task PIN_DIR ROUNDS  ->  "slurm MEDIAN P10 P90", "starter ...", "fork ..." in us */
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "es_join.h"

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *what, double *v, int n)
{
    qsort(v, n, sizeof *v, cmp);
    printf("%s %.2f %.2f %.2f\n", what, v[n / 2], v[n / 10], v[n * 9 / 10]);
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    int n = atoi(argv[2]);
    double *slurm = calloc(n, sizeof *slurm), *join = calloc(n, sizeof *join), *fork_wait = calloc(n, sizeof *fork_wait);
    char err[512];
    int init_flags = 0, pin = open(argv[1], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int init_fd = es_open_init(pin, &init_flags, err, sizeof err);     /* as slurmstepd, once */
    close(pin);
    for (int i = 0; i < n; i++) {
        int p[2];
        if (pipe(p) != 0)
            return 1;
        pid_t pid = fork();
        if (pid == 0) {
            int pidns = 0;
            double t = now_us();
            int d = open(argv[1], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            int bad = d < 0 || (init_fd >= 0 ? (init_flags & ~CLONE_NEWPID) && setns(init_fd, init_flags & ~CLONE_NEWPID)
                                              : es_join_isolation(d, argv[1], &pidns, err, sizeof err));
            close(d);
            t = now_us() - t;
            if (write(p[1], &t, sizeof t) != sizeof t || bad)
                _exit(1);
            t = now_us();
            int dir = open(argv[1], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            int rc = dir < 0 || es_join_isolation(dir, argv[1], &pidns, err, sizeof err) != 0;
            close(dir);
            t = now_us() - t;
            if (write(p[1], &t, sizeof t) != sizeof t || rc)
                _exit(1);
            /* one more process, as a starter forks the job into the namespace */
            t = now_us();
            pid_t job = fork();
            if (job == 0)
                _exit(0);
            waitpid(job, NULL, 0);
            t = now_us() - t;
            _exit(write(p[1], &t, sizeof t) != sizeof t);
        }
        close(p[1]);
        int status;
        if (read(p[0], &slurm[i], sizeof slurm[i]) != sizeof slurm[i] ||
            read(p[0], &join[i], sizeof join[i]) != sizeof join[i] ||
            read(p[0], &fork_wait[i], sizeof fork_wait[i]) != sizeof fork_wait[i] ||
            waitpid(pid, &status, 0) != pid || status != 0) {
            fprintf(stderr, "round %d failed\n", i);
            return 1;
        }
        close(p[0]);
    }
    report("slurm", slurm, n);
    report("starter", join, n);
    report("fork", fork_wait, n);
    return 0;
}
