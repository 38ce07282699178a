/* Trust checks for root code: see es_trust.h. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "es_trust.h"

int es_root_only(int fd, int want_dir)
{
    struct stat st;
    return fstat(fd, &st) == 0 && st.st_uid == 0 && !(st.st_mode & (S_IWGRP | S_IWOTH)) &&
           (want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
}

int es_trusted_path(const char *path, char *err, size_t errlen)
{
    char p[PATH_MAX + 80];
    struct stat st;

    snprintf(p, sizeof p, "%s", path);
    for (;;) {
        if (lstat(p, &st) != 0) {
            snprintf(err, errlen, "%s: %s", p, strerror(errno));
            return -1;
        }
        if (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH))) {
            snprintf(err, errlen, "%s: must be owned by root and not writable by group or others", p);
            return -1;
        }
        char *slash = strrchr(p, '/');
        if (slash == NULL || slash == p)
            return 0;
        *slash = '\0';
    }
}
