/* The last privileged steps of every set-user-ID shim (the Grid Engine starter, the Torque
 * starter, the OpenPBS joiner): enter the job's pinned view, then become the job's user for good.
 * See es_join.c. */
#ifndef ES_JOIN_H
#define ES_JOIN_H

#include <stddef.h>
#include <sys/types.h>

/* pin_dirfd: the pin directory (es_open_pin_dir); has_view: 0 for a record-only pin (the host
 * OS: nothing to enter); pin_path names it in messages. 0, or an exit code of envsched_exit.h
 * with the reason in err. pin_dirfd is closed either way. The job's isolation namespaces pinned
 * beside the view (pin/ipc, pin/uts, pin/pid) are entered too; with a PID namespace the call
 * forks: it returns 0 in the child (the job's first process in the namespace) while the parent
 * stays outside, forwards signals and exits as the child does. */
int es_join_and_drop(int pin_dirfd, int has_view, const char *pin_path, uid_t uid, gid_t gid, char *err,
                     size_t errlen);

/* Steps 2-4 of a join alone (for a caller already in its view, its supplementary groups set): gid,
 * then uid, real, effective and saved, checked, root not to be had back, no_new_privs. 0, or an
 * exit code of envsched_exit.h with the reason in err. */
int es_drop_privileges(uid_t uid, gid_t gid, char *err, size_t errlen);

/* setns into the pin's isolation namespaces (pin_dirfd stays open): those the PID namespace's init
 * holds (pin/init), through its pidfd; without "pid", the ipc and uts bound in the pin (opened
 * O_NOFOLLOW). *pidns = 1 when a PID namespace was joined: the caller's next child is the first
 * process in it. 0, or -1 with the reason in err. */
int es_join_isolation(int pin_dirfd, const char *pin_path, int *pidns, char *err, size_t errlen);

/* A pidfd of the init pin/init names ("PID START NAMES"), opened before its start time is checked,
 * and in *flags the CLONE_NEW* flags of the namespaces it holds; -2 when the pin has no init; -1
 * with the reason in err when it is gone or the record is malformed. */
int es_open_init(int pin_dirfd, int *flags, char *err, size_t errlen);

/* The start time (clock ticks since boot, field 22 of /proc/PID/stat) of process `pid`, 0 if it is
 * gone or a zombie: with the pid, what names one process (pin.py's process_start is the same). */
unsigned long long es_start_time(int pid);

/* The user namespace owning the mount namespace `mnt_ns` when it is not the caller's own (a user's own
 * view, to be entered only as the user): a new descriptor; -1 when it is the caller's; -2 on error. */
int es_foreign_userns(int mnt_ns);

#endif
