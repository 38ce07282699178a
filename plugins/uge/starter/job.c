/* Which job we start and how the shepherd would have started it.
 *
 * The job id comes from the process that started us, not from the environment (which the
 * user controls): our parent must be an sge_shepherd running as root, and its working
 * directory is the job's directory in the execd spool, .../active_jobs/<job>.<task>[/<petask>].
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "starter.h"

static int digits(const char *s, size_t n)
{
    if (n == 0 || n > 20)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

/* the first number of a /proc/PID/status line ("Uid:", "PPid:"), -1 if unknown */
static long status_field(pid_t pid, const char *field)
{
    char path[64], line[256];
    long value = -1;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, strlen(field)) == 0) {
            value = strtol(line + strlen(field), NULL, 10);
            break;
        }
    fclose(f);
    return value;
}

/* the executable's name of a process, "" if unknown */
static const char *exe_name(pid_t pid, char *buf, size_t len)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/%d/exe", (int)pid);
    ssize_t n = readlink(link, buf, len - 1);
    buf[n > 0 ? n : 0] = '\0';
    return strrchr(buf, '/') ? strrchr(buf, '/') + 1 : buf;
}

int es_job_identify(struct es_job *j, char *err, size_t errlen)
{
    char link[64], exe[PATH_MAX], cwd[PATH_MAX];
    ssize_t n;
    pid_t parent = getppid();

    memset(j, 0, sizeof *j);
    /* interactive jobs (qrsh CMD, qrsh -inherit) run us from the shepherd's qrsh_starter */
    if (strcmp(exe_name(parent, exe, sizeof exe), "qrsh_starter") == 0) {
        j->shepherd = (pid_t)status_field(parent, "PPid:");
        j->via_qrsh = 1;
    } else
        j->shepherd = parent;
    /* the real uid: the shepherd's effective uid is Grid Engine's admin user */
    if (strcmp(exe_name(j->shepherd, exe, sizeof exe), "sge_shepherd") != 0 ||
        status_field(j->shepherd, "Uid:") != 0) {
        snprintf(err, errlen, "not started by Grid Engine (parent %d is %s, not a root sge_shepherd)",
                 (int)parent, exe[0] ? exe : "unknown");
        return -1;
    }
    snprintf(link, sizeof link, "/proc/%d/cwd", (int)j->shepherd);
    n = readlink(link, cwd, sizeof cwd - 1);
    cwd[n > 0 ? n : 0] = '\0';
    const char *p = strstr(cwd, "/active_jobs/");
    if (p == NULL) {
        snprintf(err, errlen, "sge_shepherd %d works in %s, not in a job directory",
                 (int)j->shepherd, cwd);
        return -1;
    }
    p += strlen("/active_jobs/");
    size_t len = strcspn(p, "/");
    const char *dot = memchr(p, '.', len);
    if (dot == NULL || !digits(p, (size_t)(dot - p)) || !digits(dot + 1, len - (size_t)(dot - p) - 1)) {
        snprintf(err, errlen, "cannot read the job id from %s", cwd);
        return -1;
    }
    snprintf(j->id, sizeof j->id, "%.*s", (int)(dot - p), p);
    snprintf(j->task, sizeof j->task, "%.*s", (int)(len - (size_t)(dot - p) - 1), dot + 1);
    snprintf(j->key, sizeof j->key, "uge-%s.%s", j->id, j->task);
    return 0;
}

/* How the shepherd's job config says to start the job (read with the user's rights: the path
 * comes from the environment): ES_JOB_BINARY for handle_as_binary=1 (qsub -b y, qrsh), plus
 * ES_JOB_NO_SHELL for no_shell=1 (qsub -shell no, every DRMAA job). */
int es_job_kind(void)
{
    const char *dir = getenv("SGE_JOB_SPOOL_DIR");
    char path[PATH_MAX], line[4096];
    int kind = 0;

    if (dir == NULL || snprintf(path, sizeof path, "%s/config", dir) >= (int)sizeof path)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (f == NULL) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    while (fgets(line, sizeof line, f)) {
        if (strcmp(line, "handle_as_binary=1\n") == 0)
            kind |= ES_JOB_BINARY;
        else if (strcmp(line, "no_shell=1\n") == 0)
            kind |= ES_JOB_NO_SHELL;
    }
    fclose(f);
    return kind;
}

/* What the shepherd runs when no starter is configured (measured on SGE 8.1.9):
 *   script job   $SGE_STARTER_SHELL_PATH script args, as a login shell ("-sh") when
 *                SGE_STARTER_USE_LOGIN_SHELL=true; with shell_start_mode unix_behavior the
 *                script runs itself (its #! line);
 *   binary job, qrsh command, qrsh -inherit task
 *                sh -c "cmd args": the words are joined with spaces and the shell
 *                re-splits and expands them ($JOB_ID works);
 *   binary job with no_shell=1 (qsub -shell no, DRMAA)
 *                cmd args exactly as given, cmd looked up in PATH (*path is then relative). */
char **es_job_argv(int argc, char **argv, int kind, const char **path)
{
    int binary = kind & ES_JOB_BINARY;
    const char *shell = getenv("SGE_STARTER_SHELL_PATH");
    const char *mode = getenv("SGE_STARTER_SHELL_START_MODE");
    const char *login = getenv("SGE_STARTER_USE_LOGIN_SHELL");
    char **out = calloc((size_t)argc + 4, sizeof *out);
    int n = 0;

    if (out == NULL || argc < 2)
        return NULL;
    if (shell == NULL || shell[0] != '/')
        shell = "/bin/sh";
    if (binary && (kind & ES_JOB_NO_SHELL)) {
        *path = argv[1];
        for (int i = 1; i < argc; i++)
            out[n++] = argv[i];
        return out;
    }
    if (binary) {
        size_t len = 1;
        for (int i = 1; i < argc; i++)
            len += strlen(argv[i]) + 1;
        char *joined = calloc(len, 1);
        if (joined == NULL)
            return NULL;
        for (int i = 1; i < argc; i++) {
            if (i > 1)
                strcat(joined, " ");
            strcat(joined, argv[i]);
        }
        *path = shell;
        out[n++] = (char *)shell;
        out[n++] = "-c";
        out[n++] = joined;
        return out;
    }
    if (mode != NULL && strcmp(mode, "unix_behavior") == 0) {
        *path = argv[1];
        for (int i = 1; i < argc; i++)
            out[n++] = argv[i];
        return out;
    }
    *path = shell;
    out[n++] = (char *)shell;
    if (login != NULL && strcmp(login, "true") == 0) {
        const char *base = strrchr(shell, '/') + 1;
        char *dash = malloc(strlen(base) + 2);
        if (dash == NULL)
            return NULL;
        sprintf(dash, "-%s", base);
        out[0] = dash;
    }
    for (int i = 1; i < argc; i++)
        out[n++] = argv[i];
    return out;
}
