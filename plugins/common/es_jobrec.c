/* Job records: what a root scheduler hook learned about a job from the scheduler itself (uid,
 * user, queue, account), for the job's later, less trusted pieces (src/envsched/jobrecord.py has
 * the format and the reasons). Written by the Slurm job prolog (slurm-<job>) and the Torque
 * prologue (torque-<jobid>); read by slurmstepd and the Torque starter.
 *
 *   run_dir/.jobs/<key>         root's, 0644, in a directory of root's (0700) inside run_dir
 *   uid 1001                    one "name value" line each; values are single-line text of at
 *   user alice                  most 255 characters
 *   queue debug
 *   account proj                empty or absent: the job has no account
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "es_jobrec.h"
#include "es_trust.h"

#define RECORDS ".jobs"
#define MAX_VALUE 255

/* An open directory fd that is root's and not writable by group or others. */
static int root_dir_ok(int fd)
{
    struct stat st;

    return fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == 0 && (st.st_mode & 022) == 0;
}

/* run_dir/.jobs, opened, after checking run_dir and it; create both (0700) when `create`. */
static int open_records(const char *run_dir, int create, char *err, size_t errlen)
{
    int dfd, jfd;

    if (create && es_mkdir_trusted(run_dir, 0700, err, errlen) != 0)   /* missing parents too */
        return -1;
    dfd = open(run_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0 || !root_dir_ok(dfd)) {
        snprintf(err, errlen, "%s: %s", run_dir,
                 dfd < 0 ? strerror(errno) : "not a directory of root's alone");
        if (dfd >= 0)
            close(dfd);
        return -1;
    }
    if (create && mkdirat(dfd, RECORDS, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s/%s: mkdir: %s", run_dir, RECORDS, strerror(errno));
        close(dfd);
        return -1;
    }
    jfd = openat(dfd, RECORDS, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(dfd);
    if (jfd < 0 || !root_dir_ok(jfd)) {
        snprintf(err, errlen, "%s/%s: %s", run_dir, RECORDS,
                 jfd < 0 ? strerror(errno) : "not a directory of root's alone");
        if (jfd >= 0)
            close(jfd);
        return -1;
    }
    return jfd;
}

static int value_ok(const char *v)
{
    size_t n = strlen(v);

    if (n > MAX_VALUE)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
            return 0;
    return 1;
}

int es_jobrec_write_key(const char *run_dir, const char *key, uid_t uid, const char *user, const char *queue,
                        const char *account, char *err, size_t errlen)
{
    char tmp[160], text[64 + 3 * (MAX_VALUE + 16)];
    int jfd, fd = -1, len;

    if (strlen(key) > 96 || strchr(key, '/') != NULL || key[0] == '.' || key[0] == '\0') {
        snprintf(err, errlen, "%s: not a job record key", key);
        return -1;
    }
    if ((jfd = open_records(run_dir, 1, err, errlen)) < 0)
        return -1;
    snprintf(tmp, sizeof tmp, "%s.tmp%d", key, (int)getpid());
    if (!value_ok(user) || !value_ok(queue) || !value_ok(account)) {
        snprintf(err, errlen, "%s: its user, partition or account is not one line of at most %d "
                 "characters", key, MAX_VALUE);
        goto fail;
    }
    len = snprintf(text, sizeof text, "uid %u\nuser %s\nqueue %s\naccount %s\n", (unsigned)uid, user,
                   queue, account);
    fd = openat(jfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s/%s/%s: %s", run_dir, RECORDS, tmp, strerror(errno));
        goto fail;
    }
    if (fchmod(fd, 0644) != 0 || write(fd, text, (size_t)len) != len) {
        snprintf(err, errlen, "%s/%s/%s: write: %s", run_dir, RECORDS, tmp, strerror(errno));
        goto fail;
    }
    close(fd);
    fd = -1;
    /* atomic: a step of the job reading the record (another slurmd of this host writing it too)
     * sees the old one or the new one, never none */
    if (renameat(jfd, tmp, jfd, key) != 0) {
        snprintf(err, errlen, "%s/%s/%s: rename: %s", run_dir, RECORDS, key, strerror(errno));
        goto fail;
    }
    close(jfd);
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    unlinkat(jfd, tmp, 0);
    unlinkat(jfd, key, 0);           /* no older record of this job id may stand in for this one */
    close(jfd);
    return -1;
}

int es_jobrec_remove_key(const char *run_dir, const char *key, char *err, size_t errlen)
{
    int jfd = open_records(run_dir, 0, err, errlen);

    if (jfd < 0)
        return errno == ENOENT ? 0 : -1;
    int rc = 0;
    if (unlinkat(jfd, key, 0) != 0 && errno != ENOENT) {
        snprintf(err, errlen, "%s/%s/%s: unlink: %s", run_dir, RECORDS, key, strerror(errno));
        rc = -1;
    }
    close(jfd);
    return rc;
}

ssize_t es_jobrec_read_key(const char *run_dir, const char *key, char *buf, size_t cap)
{
    char err[PATH_MAX + 64];
    struct stat st;
    size_t len = 0;
    ssize_t got;
    int jfd = open_records(run_dir, 0, err, sizeof err), fd;

    if (jfd < 0)
        return -1;
    fd = openat(jfd, key, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    close(jfd);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022) != 0 ||
        st.st_size >= (off_t)cap) {
        close(fd);
        return -1;
    }
    while (len < cap - 1 && (got = read(fd, buf + len, cap - 1 - len)) > 0)
        len += (size_t)got;
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

int es_jobrec_parse(const char *text, struct es_jobrec *rec)
{
    char copy[ES_JOBREC_MAX], *save = NULL;
    int have_uid = 0;

    memset(rec, 0, sizeof *rec);
    if (strlen(text) >= sizeof copy)
        return -1;
    strcpy(copy, text);
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *value = strchr(line, ' ');
        if (value == NULL)
            value = line + strlen(line);          /* "account" alone: an empty value */
        else
            *value++ = '\0';
        if (!value_ok(value))
            return -1;
        if (strcmp(line, "uid") == 0) {
            char *end;
            errno = 0;
            unsigned long u = strtoul(value, &end, 10);
            if (have_uid || value[0] < '0' || value[0] > '9' || *end || errno || u > (uid_t)-2)
                return -1;
            rec->uid = (uid_t)u;
            have_uid = 1;
        } else if (strcmp(line, "queue") == 0) {
            strcpy(rec->partition, value);
        } else if (strcmp(line, "account") == 0) {
            strcpy(rec->account, value);
        }                                         /* user, and names of later versions: unused */
    }
    return have_uid ? 0 : -1;
}
