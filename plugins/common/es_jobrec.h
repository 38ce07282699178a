/* Job records (es_jobrec.c): run_dir/.jobs/<key>, what a root hook learned from the scheduler. */
#ifndef ES_JOBREC_H
#define ES_JOBREC_H

#include <stddef.h>
#include <sys/types.h>

#define ES_JOBREC_MAX 4096
struct es_jobrec {
    uid_t uid;
    char partition[256];
    char account[256];
};

/* Write (atomically, replacing an older one) the record of `key`; creates run_dir and .jobs
 * (0700) when missing. 0, or -1 with the reason (a value that is not one line of at most 255
 * characters, a directory that is not root's alone, an I/O error); an older record of the key is
 * then removed (it may not stand in for this one). */
int es_jobrec_write_key(const char *run_dir, const char *key, uid_t uid, const char *user, const char *queue,
                        const char *account, char *err, size_t errlen);
/* Remove it: 0 (also when there was none), or -1 with the reason. */
int es_jobrec_remove_key(const char *run_dir, const char *key, char *err, size_t errlen);
/* As root: the record's text (-1: none, or not root's alone). */
ssize_t es_jobrec_read_key(const char *run_dir, const char *key, char *buf, size_t cap);
int es_jobrec_parse(const char *text, struct es_jobrec *rec);

#endif
