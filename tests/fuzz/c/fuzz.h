/* Shared by the libFuzzer harnesses: an invariant that fails aborts, which libFuzzer reports as a
 * crash and keeps the input (crash-<sha1>) like any sanitizer finding. */
#ifndef ES_FUZZ_H
#define ES_FUZZ_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond) do { \
        if (!(cond)) { \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort(); \
        } \
    } while (0)

/* the input as a C string: everything up to its first NUL */
static inline char *fz_cstr(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t n = nul ? (size_t)(nul - data) : size;
    char *s = malloc(n + 1);
    if (s == NULL)
        abort();
    memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

/* split the input at NUL bytes into at most `max` strings (argv-like, malloc'd; free with fz_free_argv) */
static inline int fz_argv(const uint8_t *data, size_t size, char **argv, int max)
{
    int n = 0;
    size_t off = 0;
    while (off < size && n < max) {
        const uint8_t *nul = memchr(data + off, 0, size - off);
        size_t len = nul ? (size_t)(nul - (data + off)) : size - off;
        argv[n] = malloc(len + 1);
        if (argv[n] == NULL)
            abort();
        memcpy(argv[n], data + off, len);
        argv[n][len] = '\0';
        n++;
        off += len + 1;
    }
    argv[n] = NULL;
    return n;
}

static inline void fz_free_argv(char **argv)
{
    for (int i = 0; argv[i]; i++)
        free(argv[i]);
}

/* is `s` NUL-terminated within `cap` bytes */
static inline int fz_terminated(const char *s, size_t cap)
{
    return memchr(s, 0, cap) != NULL;
}
#endif
