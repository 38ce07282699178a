#ifndef ENVSCHED_MEMO_H
#define ENVSCHED_MEMO_H
#include <limits.h>
#include <stddef.h>
int es_memo_lookup(const char *run_dir, const char *key, const char *inputs, const char *requested,
                   char *shim, size_t cap);
#endif
