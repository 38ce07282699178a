/* The job's environment.
 *
 * glibc removes TMPDIR, LD_LIBRARY_PATH, LD_PRELOAD, NLSPATH, ... from the environment of a
 * set-user-ID program (AT_SECURE). Grid Engine sets TMPDIR for every job and users rely on
 * LD_LIBRARY_PATH, so the job must get them back: the kernel's copy of our initial
 * environment, /proc/self/environ, still holds every variable. We restore those that are
 * missing only after all privileges are gone (the job could set them itself anyway), and
 * before the plan's own operations, so a policy's `unset LD_LIBRARY_PATH` still wins.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/es_envop.h"
#include "starter.h"

static char *saved;         /* NUL-separated NAME=VALUE, as execve gave them */
static size_t saved_len;

int es_env_saved(void)
{
    int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
    size_t cap = 65536;

    if (fd < 0)
        return -1;
    saved = malloc(cap);
    for (;;) {
        if (saved == NULL)
            break;
        ssize_t n = read(fd, saved + saved_len, cap - saved_len);
        if (n <= 0)
            break;
        saved_len += (size_t)n;
        if (saved_len == cap) {
            cap *= 2;
            saved = realloc(saved, cap);
        }
    }
    close(fd);
    return saved == NULL ? -1 : 0;
}

void es_env_restore(void)
{
    for (size_t off = 0; saved && off < saved_len; off += strlen(saved + off) + 1) {
        char *entry = saved + off, *eq = strchr(entry, '=');
        if (eq == NULL || eq == entry)
            continue;
        *eq = '\0';
        if (getenv(entry) == NULL)
            setenv(entry, eq + 1, 0);
        *eq = '=';
    }
}

static int apply(char *line)
{
    struct es_envop op;

    if (es_envop_parse(line, &op) != 0)
        return -1;
    if (strcmp(op.action, "unset") == 0)
        return unsetenv(op.name);
    char *value = es_envop_value(&op, getenv(op.name));
    int rc = value != NULL ? setenv(op.name, value, 1) : -1;
    free(value);
    return rc;
}

int es_env_apply_shim(const char *shim)
{
    char *copy = strdup(shim), *save = NULL;
    int rc = 0;

    if (copy == NULL)
        return -1;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        if (strncmp(l, "env ", 4) == 0 && apply(l + 4) != 0)
            rc = -1;
    free(copy);
    return rc;
}

int es_env_prepend_path(const char *tools_dir)
{
    char line[PATH_MAX + 32];
    snprintf(line, sizeof line, "prepend PATH %s/bin", tools_dir);
    if (apply(line) != 0)
        return -1;
    /* login shells: the view's /etc/profile.d/zz-envsched.sh puts it first in PATH again after a
     * tree's /etc/profile reset PATH (src/envsched/loginenv.py) */
    snprintf(line, sizeof line, "set ENVSCHED_PATH_PREPEND %s/bin", tools_dir);
    return apply(line);
}
