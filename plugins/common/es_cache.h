/* The decision cache's reader (#13): apply a decision the resolver made earlier for exactly the
 * same inputs, without starting it. The writer, and the entry's format and rules, are
 * src/envsched/decisioncache.py; the shared views it binds, src/envsched/sharedviews.py.
 * C decides nothing here: it checks that every input the resolver recorded is unchanged, and
 * anything it cannot check, does not know or finds changed is a miss (the resolver runs). */
#ifndef ES_CACHE_H
#define ES_CACHE_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#define ES_CACHE_MAX_GIDS 256

/* The job's user as the node's NSS gives it now (the resolver's identity.lookup_user). */
struct es_user {
    uid_t uid;
    gid_t gid;
    char name[256];
    char home[PATH_MAX];
    int ngids;
    gid_t gids[ES_CACHE_MAX_GIDS];
    char groups[8192];          /* "GID:NAME,..." sorted by gid, as decisioncache.py writes it */
};
/* NSS lookups: in the caller's own process (not after a fork of a threaded one). 0 or -1. */
int es_user_lookup(uid_t uid, struct es_user *u);

struct es_cache_job {
    const char *run_dir;
    const char *inputs;         /* the shim's inputs line, exactly as it passes it as --inputs */
    const char *key;            /* the job's pin key */
    int read_user_file;         /* 0: the job named its environment (~/.chos is no input) */
    pid_t owner;                /* the pin's owner (gc: its pid and start time) */
    const char *log_file;       /* the admin log (site.log_file; "" for none): a hit's line, as root */
    const char *scheduler;      /* for that line: slurm, uge ... */
    const char *job;            /* and the scheduler's job (and step) id */
};

struct es_cache_hit {
    char shim[16384];           /* the resolver's protocol lines (shim.py), for this job's key */
    char env[256];
    char source[128];
    char digest[128];
    char view[40];              /* the shared view bound onto the job's pin; "-": the host OS */
};

enum { ES_CACHE_HIT = 0, ES_CACHE_MISS = 1, ES_CACHE_ERROR = -1 };

/* In a child of the caller: as root, the entry checked, the view bound onto run_dir/key/mnt and the
 * pin's files written (a later step's memo and the release find an ordinary pin); ~/.chos read as
 * the user. The caller waits at most timeout_ms (a hung home directory): then a miss.
 * ES_CACHE_HIT with `hit` filled, ES_CACHE_MISS with the first input that differs in `why`. */
int es_cache_try(const struct es_cache_job *job, const struct es_user *u, int timeout_ms,
                 struct es_cache_hit *hit, char *why, size_t whylen);

/* The checks of an entry (decisioncache.py's `same`, `owner`, `absent`, `user`, `groups`,
 * `userfile` lines), in order, the first line `header`, up to `end`; every other line is given
 * to `other` (0: taken; -1: unknown, a miss). Shared with the submit-time cache (submitcache.py).
 * ES_CACHE_HIT when every check holds, else ES_CACHE_MISS with the line at fault in why. */
struct es_check {
    const char *header;
    const char *inputs;         /* the `inputs` line must be exactly this */
    const struct es_user *u;
    int read_user_file;         /* 0: ~/.chos is no input (the request named the environment) */
    int switch_ids;             /* 1: we are root and read ~/.chos as u (effective ids); 0: we are u */
    int (*other)(char *line, void *arg);
    void *arg;
};
int es_entry_check(char *text, const struct es_check *c, char *why, size_t whylen);
/* An entry file that is owner's alone (a regular file, mode 0600, one link): its text or -1. */
ssize_t es_entry_read(const char *path, uid_t owner, char *text, size_t cap);

/* ~/.chos's bytes (at most 256) to its value as userfile.py's parse_user_file gives it: the first
 * line, spaces, tabs and CRs stripped, plain ASCII; 0 and the value, or -1 (too long, not ASCII, a
 * NUL: then the resolver reads it and judges). Never a value Python would not give
 * (tests/fuzz/test_fuzz_python.py::test_userfile_same_in_c compares them). */
int es_user_file_value(const unsigned char *data, size_t len, char *value, size_t cap);

/* FNV-1a 64 of text, as 16 hex digits: the entry's file name (decisioncache.fnv1a64). */
void es_cache_name(const char *text, char out[17]);

#endif
