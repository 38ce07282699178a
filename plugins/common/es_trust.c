/* Trust checks for root code: see es_trust.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

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

int es_open_pin_dir(const char *run_dir, const char *key, char *err, size_t errlen)
{
    int run = open(run_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (run < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", run_dir, strerror(e));
        errno = e;
        return -1;
    }
    if (!es_root_only(run, 1)) {
        close(run);
        snprintf(err, errlen, "%s: must be a directory of root's, not writable by others", run_dir);
        errno = EPERM;
        return -1;
    }
    int dir = openat(run, key, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    close(run);
    if (dir < 0) {
        snprintf(err, errlen, "%s/%s: %s", run_dir, key, strerror(e));
        errno = e;
        return -1;
    }
    if (!es_root_only(dir, 1)) {
        close(dir);
        snprintf(err, errlen, "%s/%s: not root's alone", run_dir, key);
        errno = EPERM;
        return -1;
    }
    return dir;
}

ssize_t es_read_root_file(int dirfd, const char *name, char *buf, size_t cap)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (!es_root_only(fd, 0)) {
        close(fd);
        errno = EPERM;
        return -1;
    }
    ssize_t n = read(fd, buf, cap - 1);
    int e = errno;
    close(fd);
    if (n < 0) {
        errno = e;
        return -1;
    }
    if ((size_t)n >= cap - 1) {
        errno = EFBIG;
        return -1;
    }
    buf[n] = '\0';
    return n;
}

long es_parse_uid(const char *text)
{
    char *end = NULL;

    if (text[0] < '0' || text[0] > '9')
        return -1;
    errno = 0;
    long uid = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || uid < 0 || (unsigned long)uid >= (unsigned long)(uid_t)-1)
        return -1;
    return uid;
}

int es_mkdir_trusted(const char *path, unsigned mode, char *err, size_t errlen)
{
    char prefix[PATH_MAX];
    struct stat st;
    size_t len = strlen(path);

    if (path[0] != '/' || len >= sizeof prefix) {
        snprintf(err, errlen, "%s: not an absolute path", path);
        return -1;
    }
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        if (path[i - 1] == '/')                 /* "//" or a trailing "/" */
            continue;
        memcpy(prefix, path, i);
        prefix[i] = '\0';
        int last = path[i] == '\0' || (path[i] == '/' && path[i + 1] == '\0');
        if (lstat(prefix, &st) != 0) {
            if (errno != ENOENT || (mkdir(prefix, last ? mode : 0755) != 0 && errno != EEXIST)) {
                snprintf(err, errlen, "%s: %s", prefix, strerror(errno));
                return -1;
            }
            continue;                           /* made by root (us) */
        }
        if (last)
            break;
        if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            if (st.st_uid != 0 || realpath(prefix, target) == NULL) {
                snprintf(err, errlen, "%s: a symbolic link that is not root's, or leads nowhere", prefix);
                return -1;
            }
            if (es_trusted_path(target, err, errlen) != 0 || stat(target, &st) != 0 || !S_ISDIR(st.st_mode)) {
                if (!S_ISDIR(st.st_mode))
                    snprintf(err, errlen, "%s: not a directory", target);
                return -1;
            }
            continue;
        }
        if (!S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH))) {
            snprintf(err, errlen, "%s must be a directory of root's, not writable by group or others", prefix);
            return -1;
        }
    }
    return 0;
}
