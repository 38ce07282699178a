/* The submit-time cache's reader: see es_submit.h, and src/envsched/submitcache.py for the entry. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_submit.h"

#define ENTRY_MAX 65536

static int append(char *buf, size_t *len, size_t cap, const char *text)
{
    int w = snprintf(buf + *len, cap - *len, "%s\n", text);
    if (w < 0 || (size_t)w >= cap - *len)
        return -1;
    *len += (size_t)w;
    return 0;
}

struct reading {
    struct es_run *a;
    int have_code;
};

/* the answer's lines, after the checks (submitcache.py: exit, out, err); anything else: a miss */
static int answer_line(char *line, void *arg)
{
    struct reading *r = arg;
    if (strncmp(line, "exit\t", 5) == 0) {
        char *end = NULL;
        long code = strtol(line + 5, &end, 10);
        if (r->have_code || end == line + 5 || *end != '\0' || code < 0 || code > 255)
            return -1;
        r->a->status = (int)code;
        r->have_code = 1;
        return 0;
    }
    if (strncmp(line, "out\t", 4) == 0)
        return append(r->a->out, &r->a->out_len, sizeof r->a->out, line + 4);
    if (strncmp(line, "err\t", 4) == 0)
        return append(r->a->err, &r->a->err_len, sizeof r->a->err, line + 4);
    return -1;
}

int es_submit_cached(const struct es_submit_lookup *l, struct es_run *a, char *why, size_t whylen)
{
    static char text[ENTRY_MAX];

    memset(a, 0, sizeof *a);
    if (strpbrk(l->inputs, "\n\r") != NULL) {
        snprintf(why, whylen, "inputs not one line");
        return ES_CACHE_MISS;
    }
    /* 1. the entry: the owner's alone, whole (written by rename) */
    if (es_entry_read(l->path, l->owner, text, sizeof text) <= 0) {
        snprintf(why, whylen, "no usable entry");
        return ES_CACHE_MISS;
    }
    /* 2. every check in order (es_cache.c), then the answer */
    struct reading r = {a, 0};
    struct es_check c = {.header = ES_SUBMIT_HEADER, .inputs = l->inputs, .u = l->u,
                         .read_user_file = l->read_user_file, .switch_ids = l->switch_ids,
                         .other = answer_line, .arg = &r};
    int rc = es_entry_check(text, &c, why, whylen);
    if (rc == ES_CACHE_HIT && !r.have_code) {
        snprintf(why, whylen, "entry without its exit code");
        rc = ES_CACHE_MISS;
    }
    if (rc != ES_CACHE_HIT)
        memset(a, 0, sizeof *a);
    return rc == ES_CACHE_HIT ? ES_CACHE_HIT : ES_CACHE_MISS;
}

int es_submit_first_out(const struct es_run *a, char *buf, size_t cap)
{
    size_t n = strcspn(a->out, "\n");
    if (n >= cap)
        return -1;
    memcpy(buf, a->out, n);
    buf[n] = '\0';
    return 0;
}
