/* Trust checks shared by the C shims that run as root (set-user-ID starters, the Torque starter,
 * the PAM module): what root may read a decision or a configuration from. See es_trust.c. */
#ifndef ES_TRUST_H
#define ES_TRUST_H

#include <stddef.h>
#include <sys/types.h>

/* fd is root's, not writable by group or others, and a directory (want_dir) or a regular file */
int es_root_only(int fd, int want_dir);
/* path and every directory above it are root's and not writable by group or others (lstat: a
 * symbolic link anywhere is judged itself, not followed); 0, or -1 with the reason in err */
int es_trusted_path(const char *path, char *err, size_t errlen);
/* run_dir/KEY (a pin) as a directory fd: each opened with O_NOFOLLOW, the second relative to the
 * first, and each must pass es_root_only. On failure -1 with the reason in err and errno ENOENT
 * when either does not exist (a pin not prepared yet), EPERM when one is not root's alone, or the
 * open's own errno. */
int es_open_pin_dir(const char *run_dir, const char *key, char *err, size_t errlen);
/* A small file of a pin (`shim`, written last; `inputs`) read whole into buf, NUL-terminated: its
 * length, or -1 with errno ENOENT (not there: the pin is not complete yet), EPERM (not a regular
 * file of root's alone), EFBIG (cap - 1 bytes or more) or the open's/read's own. O_NOFOLLOW, relative
 * to the pin's dirfd (es_open_pin_dir). Every caller words its own message. */
ssize_t es_read_root_file(int dirfd, const char *name, char *buf, size_t cap);

/* PATH as a directory, creating what is missing: every directory on its way that exists must be
 * root's and not writable by group or others (a symbolic link of root's counts as its target,
 * whose own chain es_trusted_path judges); each missing one is made root's, 0755, the last one
 * with `mode`. PATH itself, when it exists, is left for the caller to judge. The rule of
 * src/envsched/pin.py run_dir_problem/_secure_dir. 0, or -1 with the reason in err. */
int es_mkdir_trusted(const char *path, unsigned mode, char *err, size_t errlen);

/* A uid written as decimal digits alone that fits uid_t (not (uid_t)-1), or -1: "1000junk",
 * "4294968296" (which strtol plus a cast would take for 1000) and "" are no uid. */
long es_parse_uid(const char *text);

#endif
