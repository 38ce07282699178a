/* Per-task cost of the isolation namespaces (bench/isolation_bench.py): what a task does more to
 * join a pin's ipc, uts and pid namespaces (es_join_isolation, as the Slurm plugin does in
 * task_init_privileged), timed inside a fresh child each round; and the fork + exit + wait of one
 * more process (what the Grid Engine, Torque and OpenPBS starters add: the job is their child in
 * the PID namespace).  isolation_task PIN_DIR ROUNDS  ->  "join MEDIAN P10 P90" and "fork ..." in us */
#include <fcntl.h>
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
    double *join = calloc(n, sizeof *join), *fork_wait = calloc(n, sizeof *fork_wait);
    for (int i = 0; i < n; i++) {
        int p[2];
        if (pipe(p) != 0)
            return 1;
        pid_t pid = fork();
        if (pid == 0) {
            char err[512];
            int pidns = 0;
            double t = now_us();
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
        if (read(p[0], &join[i], sizeof join[i]) != sizeof join[i] ||
            read(p[0], &fork_wait[i], sizeof fork_wait[i]) != sizeof fork_wait[i] ||
            waitpid(pid, &status, 0) != pid || status != 0) {
            fprintf(stderr, "round %d failed\n", i);
            return 1;
        }
        close(p[0]);
    }
    report("join", join, n);
    report("fork", fork_wait, n);
    return 0;
}
