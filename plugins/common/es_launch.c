/* An environment's launcher: see es_launch.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "envsched_exit.h"
#include "es_launch.h"

int es_launcher_parse(const char *shim, struct es_launcher *l)
{
    static const char key[] = "launcher ";
    size_t used = 0;

    l->argc = 0;
    l->argv[0] = NULL;
    for (const char *line = shim; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, key, sizeof key - 1) != 0)
            continue;
        const char *value = line + sizeof key - 1;
        size_t len = strcspn(value, "\n");
        if (l->argc == ES_LAUNCH_MAX_ARGS || len == 0 || len + 1 > sizeof l->buf - used)
            goto bad;
        memcpy(l->buf + used, value, len);
        l->buf[used + len] = '\0';
        l->argv[l->argc++] = l->buf + used;
        used += len + 1;
    }
    l->argv[l->argc] = NULL;
    if (l->argc > 0 && l->argv[0][0] != '/')
        goto bad;
    return 0;
bad:
    l->argc = 0;
    l->argv[0] = NULL;
    return -1;
}

const char *es_launch_resolve(const char *name, const char *path_env, char *buf, size_t cap)
{
    if (name == NULL || name[0] == '\0' || strchr(name, '/') != NULL)
        return name;
    if (path_env == NULL)
        path_env = "/bin:/usr/bin";                      /* execvp's without PATH (glibc's _CS_PATH) */
    size_t nlen = strlen(name);
    for (const char *dir = path_env; dir; dir = strchr(dir, ':') ? strchr(dir, ':') + 1 : NULL) {
        size_t dlen = strcspn(dir, ":");
        struct stat st;
        if (dlen == 0 || dlen + 1 + nlen + 1 > cap)
            continue;                                    /* an empty entry is not the cwd here */
        memcpy(buf, dir, dlen);
        buf[dlen] = '/';
        memcpy(buf + dlen + 1, name, nlen + 1);
        if (stat(buf, &st) == 0 && !S_ISDIR(st.st_mode) && access(buf, X_OK) == 0)
            return buf;
    }
    return name;
}

char **es_launch_argv(const struct es_launcher *l, const char *program, char *const *args, int nargs)
{
    if (nargs < 0)
        nargs = 0;
    char **out = calloc((size_t)l->argc + (size_t)nargs + 2, sizeof *out);
    int n = 0;

    if (out == NULL)
        return NULL;
    for (int i = 0; i < l->argc; i++)
        out[n++] = l->argv[i];
    out[n++] = (char *)program;
    for (int i = 0; i < nargs; i++)
        out[n++] = args[i];
    out[n] = NULL;
    return out;
}

int es_launch_exit_code(int err)
{
    switch (err) {
    case ENOENT: case EACCES: case ENOEXEC: case ENOTDIR: case ELOOP: case EPERM:
        return ENVSCHED_EXIT_ENV_BROKEN;
    default:
        return ENVSCHED_EXIT_EXEC_FAILED;
    }
}

int es_launch_encode(char *out, size_t cap, int tell, char *const *args, int n)
{
    size_t used = 0;
    int w = snprintf(out, cap, "1:%d:%d:", tell ? 1 : 0, n);

    if (w < 0 || (size_t)w >= cap || n < 1 || n > ES_LAUNCH_MAX_ARGS + 1)
        return -1;
    used = (size_t)w;
    for (int i = 0; i < n; i++) {
        w = snprintf(out + used, cap - used, "%zu:%s", strlen(args[i]), args[i]);
        if (w < 0 || (size_t)w >= cap - used)
            return -1;
        used += (size_t)w;
    }
    return (int)used;
}

/* 1 to `digits` decimal digits without a leading zero (but "0"), then ':'; -1 otherwise: one way
 * to write each value, so that encode(decode(text)) is text */
static long number(const char **p, int digits)
{
    long v = 0;
    int k = 0;

    if ((*p)[0] == '0' && (*p)[1] >= '0' && (*p)[1] <= '9')
        return -1;
    while (**p >= '0' && **p <= '9') {
        if (++k > digits)
            return -1;
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    if (k == 0 || **p != ':')
        return -1;
    (*p)++;
    return v;
}

int es_launch_decode(const char *text, char *out, size_t cap, char **argv, int max, int *tell)
{
    const char *p = text;
    size_t used = 0;

    if (text == NULL || strncmp(p, "1:", 2) != 0)
        return -1;
    p += 2;
    long t = number(&p, 1), n = t < 0 || t > 1 ? -1 : number(&p, 3);
    if (n < 1 || n > max)
        return -1;
    for (long i = 0; i < n; i++) {
        long len = number(&p, 7);
        if (len < 1 || (size_t)len >= cap - used || strnlen(p, (size_t)len) < (size_t)len)
            return -1;                                   /* empty, too long, or past the end */
        memcpy(out + used, p, (size_t)len);
        out[used + (size_t)len] = '\0';
        argv[i] = out + used;
        used += (size_t)len + 1;
        p += len;
    }
    if (*p != '\0')
        return -1;
    argv[n] = NULL;
    *tell = (int)t;
    return (int)n;
}
