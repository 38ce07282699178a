/* The job's environment as stage 1 (envguard.c) copied it: NUL-separated NAME=VALUE. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "torque_starter.h"

char **es_jobenv_read(int fd)
{
    size_t cap = 65536, len = 0, n = 0;
    char *buf = malloc(cap);

    while (buf) {
        ssize_t got = read(fd, buf + len, cap - len - 1);
        if (got < 0)
            return NULL;
        if (got == 0)
            break;
        len += (size_t)got;
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
    }
    if (buf == NULL)
        return NULL;
    buf[len] = '\0';
    for (size_t off = 0; off < len; off += strlen(buf + off) + 1)
        n++;
    char **env = calloc(n + 1, sizeof *env);
    if (env == NULL)
        return NULL;
    n = 0;
    for (size_t off = 0; off < len; off += strlen(buf + off) + 1)
        if (strchr(buf + off, '=') != NULL && buf[off] != '=')
            env[n++] = buf + off;
    return env;
}

const char *es_jobenv_get(char **env, const char *name)
{
    size_t len = strlen(name);

    for (char **e = env; e && *e; e++)
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
            return *e + len + 1;
    return NULL;
}
