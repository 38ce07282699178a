/* Release a job's pin without Python (plugins/common/es_release.c): what `envsched release`
 * (src/envsched/pin.py: PinStore.release) does for a pin that needs nothing more than its view
 * detached. Shared by the Grid Engine and Slurm epilogs. */
#ifndef ES_RELEASE_H
#define ES_RELEASE_H

#include <stddef.h>

enum es_release {
    ES_RELEASED = 0,          /* detached and removed */
    ES_RELEASE_NONE = 1,      /* no such pin (never made, or released already) */
    ES_RELEASE_RESOLVER = 2,  /* left for `envsched release`: see es_release_pin */
    ES_RELEASE_FAILED = -1,   /* the reason in why */
};

/* Release run_dir/key. Left alone for the resolver (ES_RELEASE_RESOLVER) when the pin has a node
 * epilog to run (hooks.json), isolation namespaces (init: the PID namespace's init to kill; ipc,
 * uts), or the node holds image mounts (run_dir/.images), which the resolver lets go once idle. */
int es_release_pin(const char *run_dir, const char *key, char *why, size_t whylen);
/* es_release_pin, then, when it released the pin, the admin log's line (audit.py's format)
 * "event=released key=KEY" followed by `fields` (e.g. " scheduler=slurm job=12"; "" for none). */
int es_release_logged(const char *run_dir, const char *key, const char *log_file, const char *fields,
                      char *why, size_t whylen);

/* A shared view's id (sharedviews.py view_id): 32 lowercase hex digits. */
int es_is_view_id(const char *name);
/* The shared view directory `dir` open and flock()ed, and still the directory at `dir` (whoever held
 * the lock may have let go of it); `wait`: wait for the lock, else give up at once. The descriptor
 * (closing it unlocks), or -1. es_cache.c joins under it, release lets go under it; sharedviews.py
 * _lock is the same in Python. */
int es_view_lock(const char *dir, int wait);
/* The same, shared, for a join (es_cache.c): joins of one view run side by side, and wait at most
 * timeout_ms for an exclusive holder (a build, a release letting go). The descriptor, or -1. */
int es_view_lock_join(const char *dir, int timeout_ms);

/* One line to the admin log file (root's, a regular file with one link, opened O_NOFOLLOW and
 * appended to; "" for none), in the resolver's format: "STAMP envsched[PID]: LINE". */
void es_admin_log(const char *log_file, const char *line);

#endif
