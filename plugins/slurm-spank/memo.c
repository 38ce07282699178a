/* A later step of a job whose request leads to the view the job's first step got joins it
 * without starting the resolver: the decision is a pure function of its inputs (the job's
 * environment is fixed when the job starts; a changed ~/.chos does not move a running job).
 *
 * The pin directory and the job record are root-only (0700 directories) and user_init runs with
 * the user's effective uid, so the small files are read by one forked child that takes root back
 * (slurmstepd is multithreaded: changing its own ids would change every thread's). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "envsched_spank.h"
#include "memo.h"

static ssize_t read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    size_t len = 0;
    ssize_t got;

    if (fd < 0)
        return -1;
    while (len < cap - 1 && (got = read(fd, buf + len, cap - 1 - len)) > 0)
        len += (size_t)got;
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

/* The fields of an inputs line other than option= and chos=: "uid=..\tpartition=..\taccount=.." */
static void other_fields(const char *inputs, char *out, size_t cap)
{
    char copy[1024], *save = NULL;
    size_t len = 0;

    snprintf(copy, sizeof copy, "%s", inputs);
    out[0] = '\0';
    for (char *f = strtok_r(copy, "\t\n", &save); f; f = strtok_r(NULL, "\t\n", &save))
        if (strncmp(f, "option=", 7) != 0 && strncmp(f, "chos=", 5) != 0 && len < cap)
            len += (size_t)snprintf(out + len, cap - len, "%s\t", f);
}

/* Does a step with `inputs`, asking for `requested` (its option, else its CHOS), get the same
 * view as the job's first step, recorded as `have` (its inputs) and `shim` (its decision)? Yes
 * if the inputs are identical, or if the step asks by name for exactly the environment the job
 * got (typically: CHOS, which the plugin itself set in the job's environment) with the same
 * user, partition and account, the only other inputs of the decision. */
static int same_view(const char *have, const char *inputs, const char *requested, const char *shim)
{
    char a[1024], b[1024], env[128] = "";
    const char *line = strstr(shim, "environment ");

    if (strcmp(have, inputs) == 0)
        return 1;
    if (requested[0] == '\0' || line == NULL || (line != shim && line[-1] != '\n'))
        return 0;
    sscanf(line + 12, "%127s", env);
    other_fields(have, a, sizeof a);
    other_fields(inputs, b, sizeof b);
    return strcmp(env, requested) == 0 && strcmp(a, b) == 0;
}

/* One item to the parent: its length (-1: none) and its bytes. */
static int send_item(int fd, const char *buf, ssize_t len)
{
    int32_t n = (int32_t)len;

    if (write(fd, &n, sizeof n) != (ssize_t)sizeof n)
        return -1;
    return len <= 0 || write(fd, buf, (size_t)len) == len ? 0 : -1;
}

static const char *take_item(const char *p, const char *end, char *dst, size_t cap, ssize_t *len)
{
    int32_t n;

    *len = -1;
    dst[0] = '\0';
    if (p == NULL || end - p < (ptrdiff_t)sizeof n)
        return NULL;
    memcpy(&n, p, sizeof n);
    p += sizeof n;
    if (n < 0)
        return p;
    if ((size_t)n >= cap || end - p < n)
        return NULL;
    memcpy(dst, p, (size_t)n);
    dst[n] = '\0';
    *len = n;
    return p + n;
}

int es_root_read(const char *run_dir, uint32_t job, const char *key, struct es_root_files *f)
{
    int p[2], status = 0;
    pid_t pid;
    size_t len = 0;
    ssize_t got;
    static char buf[3 * sizeof(int32_t) + sizeof f->record + sizeof f->inputs + sizeof f->shim];

    f->record_len = f->inputs_len = f->shim_len = -1;
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {                      /* root again: the three files to the parent */
        char path[PATH_MAX];
        close(p[0]);
        if (setresuid(0, 0, 0) != 0 || setresgid(0, 0, 0) != 0 || setgroups(0, NULL) != 0)
            _exit(1);
        f->record_len = es_jobrec_read(run_dir, job, f->record, sizeof f->record);
        snprintf(path, sizeof path, "%s/%s/inputs", run_dir, key);
        f->inputs_len = read_file(path, f->inputs, sizeof f->inputs);
        snprintf(path, sizeof path, "%s/%s/shim", run_dir, key);
        f->shim_len = read_file(path, f->shim, sizeof f->shim);
        if (send_item(p[1], f->record, f->record_len) != 0 ||
            send_item(p[1], f->inputs, f->inputs_len) != 0 ||
            send_item(p[1], f->shim, f->shim_len) != 0)
            _exit(1);
        _exit(0);
    }
    close(p[1]);
    while (len < sizeof buf && (got = read(p[0], buf + len, sizeof buf - len)) != 0) {
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            break;
        len += (size_t)got;
    }
    close(p[0]);
    pid_t done;
    while ((done = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    if (done < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -1;
    const char *q = buf, *end = buf + len;
    q = take_item(q, end, f->record, sizeof f->record, &f->record_len);
    q = take_item(q, end, f->inputs, sizeof f->inputs, &f->inputs_len);
    q = take_item(q, end, f->shim, sizeof f->shim, &f->shim_len);
    if (q == NULL) {
        f->record_len = f->inputs_len = f->shim_len = -1;
        return -1;
    }
    return 0;
}

/* 1 and the shim lines in `shim` when the job's pin holds the view this step needs. */
int es_memo_match(const struct es_root_files *f, const char *inputs, const char *requested,
                  char *shim, size_t cap)
{
    if (f->inputs_len <= 0 || f->shim_len <= 0 || !same_view(f->inputs, inputs, requested, f->shim))
        return 0;
    snprintf(shim, cap, "%s", f->shim);
    return 1;
}
