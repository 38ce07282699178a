/* Fault points for the tests (#13, #15): a root-only switch, never an environment variable or an
 * argument. A point kills its process with SIGKILL when `<run_dir>/.faults` exists, is root's
 * alone (a regular file, mode 0600 or stricter, one link, not a symbolic link) and names the point
 * on a line of its own. Without that file a point costs one failing open(2). The Python side is
 * src/envsched/faults.py (same file, same rules); tests/ns/test_shared_views.py and
 * tests/pam/test_pam_cache.py list the points and what must hold after each kill. */
#ifndef ES_FAULT_H
#define ES_FAULT_H

void es_fault(const char *run_dir, const char *point);

#endif
