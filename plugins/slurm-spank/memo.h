#ifndef ENVSCHED_MEMO_H
#define ENVSCHED_MEMO_H
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* What a step reads as root under run_dir, in one forked child: the job record (jobrec.c) and the
 * memo of the job's pin `key`. A length of -1: the file is not there (or not usable). */
struct es_root_files {
    ssize_t record_len;
    char record[4096];
    ssize_t inputs_len;
    char inputs[1024];
    ssize_t shim_len;
    char shim[16384];
};
int es_root_read(const char *run_dir, uint32_t job, const char *key, struct es_root_files *f);
int es_memo_match(const struct es_root_files *f, const char *inputs, const char *requested,
                  char *shim, size_t cap);
#endif
