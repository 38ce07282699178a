/* The pid-reuse check of plugins/common/es_proc.c, provoked for real (tests/uge/test_uge_forged.py).
 *
 * Run as root as the first process of a new pid namespace (`unshare --pid --fork --mount-proc`),
 * where writing /proc/sys/kernel/ns_last_pid makes the kernel hand out a chosen pid next:
 *
 *   P (the "shepherd") forks C (the "starter"). C holds P with es_proc_open, as the starter holds
 *   its parent, reads P's executable, and tells us. We kill and reap P (C goes to us, pid 1) and
 *   fork Q with P's pid. C then finds: /proc/PID answers again (for Q: what a check by pid alone
 *   would read), but through its handle P is not alive, its /proc facts are unreadable, and
 *   getppid() is no longer P's pid. C exits 0 when all of that holds; we exit with C's status.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "es_proc.h"

int main(void)
{
    int up[2], down[2];
    char c;

    if (getpid() != 1 || pipe(up) != 0 || pipe(down) != 0) {
        fprintf(stderr, "proc_reuse: run me as pid 1 of a new pid namespace\n");
        return 2;
    }
    pid_t parent = fork();
    if (parent == 0) {                                   /* P */
        if (fork() == 0) {                               /* C */
            struct es_proc p;
            char exe[4096], naive[4096], path[64];
            pid_t pp = getppid();
            if (es_proc_open(&p, pp) != 0 || es_proc_link(&p, "exe", exe, sizeof exe) < 0 ||
                !es_proc_alive(&p) || es_proc_status(&p, "Uid:", 0) != 0) {
                fprintf(stderr, "proc_reuse: cannot hold the live parent\n");
                _exit(3);
            }
            if (write(up[1], "o", 1) != 1 || read(down[0], &c, 1) != 1)
                _exit(4);
            snprintf(path, sizeof path, "/proc/%d/exe", (int)pp);
            int reused = readlink(path, naive, sizeof naive) > 0;
            int alive = es_proc_alive(&p);
            ssize_t link = es_proc_link(&p, "exe", exe, sizeof exe);
            long uid = es_proc_status(&p, "Uid:", 0);
            int same_parent = getppid() == pp;
            printf("pid=%d reused=%d alive=%d link=%zd status=%ld same_parent=%d\n", (int)pp, reused, alive,
                   link, uid, same_parent);
            fflush(stdout);
            _exit(reused && !alive && link < 0 && uid < 0 && !same_parent ? 0 : 1);
        }
        pause();
        _exit(0);
    }
    if (read(up[0], &c, 1) != 1)
        return 5;
    kill(parent, SIGKILL);
    waitpid(parent, NULL, 0);                            /* P reaped: its pid is free */
    int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY);
    if (fd < 0 || dprintf(fd, "%d", (int)parent - 1) < 0 || close(fd) != 0) {
        perror("ns_last_pid");
        return 6;
    }
    pid_t q = fork();
    if (q == 0) {
        pause();
        _exit(0);
    }
    if (q != parent) {
        fprintf(stderr, "proc_reuse: got pid %d, not %d\n", (int)q, (int)parent);
        return 7;
    }
    if (write(down[1], "g", 1) != 1)
        return 8;
    int status = 0;
    pid_t w;
    while ((w = wait(&status)) > 0 && w == q)
        ;                                                /* C's status (Q does not end by itself) */
    kill(q, SIGKILL);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 9;
}
