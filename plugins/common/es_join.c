/* Enter a pinned view and drop privileges for good: see es_join.h. One comment per step. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "envsched_exit.h"
#include "es_join.h"

int es_join_and_drop(int pin_dirfd, int has_view, const char *pin_path, uid_t uid, gid_t gid, char *err,
                     size_t errlen)
{
    /* 1. the view: its pinned mount namespace, opened without following a link planted in place
     *    of it; setns moves our root and cwd into the view (the caller chdirs afterwards) */
    if (has_view) {
        int ns = openat(pin_dirfd, "mnt", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (ns < 0 || setns(ns, CLONE_NEWNS) != 0) {
            snprintf(err, errlen, "cannot enter the job's environment (%s %s/mnt: %s)", ns < 0 ? "open" : "setns",
                     pin_path, strerror(errno));
            if (ns >= 0)
                close(ns);
            close(pin_dirfd);
            return ENVSCHED_EXIT_SETUP_FAILED;
        }
        close(ns);
    }
    close(pin_dirfd);
    /* 2. real, effective and saved gid, then uid (a uid change first would forbid the gid one);
     *    the supplementary groups stay as the scheduler set them */
    if (setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0) {
        snprintf(err, errlen, "cannot drop privileges: %s", strerror(errno));
        return ENVSCHED_EXIT_SETUP_FAILED;
    }
    /* 3. all three ids are the user's, and root cannot be had back */
    uid_t r, e, s;
    if (getresuid(&r, &e, &s) != 0 || r != uid || e != uid || s != uid) {
        snprintf(err, errlen, "privileges not dropped");
        return ENVSCHED_EXIT_SETUP_FAILED;
    }
    if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        snprintf(err, errlen, "privileges came back after dropping them");
        return ENVSCHED_EXIT_SETUP_FAILED;
    }
    /* 4. nothing the job executes gains privileges (set-user-ID files, file capabilities) */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        snprintf(err, errlen, "prctl(PR_SET_NO_NEW_PRIVS): %s", strerror(errno));
        return ENVSCHED_EXIT_SETUP_FAILED;
    }
    return 0;
}
