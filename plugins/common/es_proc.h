/* A handle on another process that a reused pid cannot fool: see es_proc.c.
 * Used by the root C shims that learn their job from the process that started them (the Grid
 * Engine starter and epilog: their parent is the job's sge_shepherd). */
#ifndef ES_PROC_H
#define ES_PROC_H

#include <stddef.h>
#include <sys/types.h>

struct es_proc {
    pid_t pid;
    int pidfd;              /* pidfd_open(2): names this process, never a later one with its pid */
    int dirfd;              /* /proc/PID, opened while pidfd's process held PID: the same process  */
};

/* Open pid: pidfd first, then /proc/PID, then check the pidfd's process still lives (so /proc/PID
 * was opened on it). 0, or -1 with errno (ESRCH: gone). */
int es_proc_open(struct es_proc *p, pid_t pid);
void es_proc_close(struct es_proc *p);
/* 1 while the process has not been reaped (pidfd_send_signal(pidfd, 0) succeeds), else 0 */
int es_proc_alive(const struct es_proc *p);
/* /proc/PID/<name> (exe, cwd) read through the dirfd; "" and -1 if unreadable */
ssize_t es_proc_link(const struct es_proc *p, const char *name, char *buf, size_t len);
/* field `index` (0-based) of a /proc/PID/status line ("Uid:", "PPid:"); -1 if unknown */
long es_proc_status(const struct es_proc *p, const char *field, int index);
/* the process's working directory as an O_DIRECTORY descriptor (no path lookup); -1 on failure */
int es_proc_cwd_fd(const struct es_proc *p);

#endif
