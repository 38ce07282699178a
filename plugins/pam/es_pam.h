/* pam_envsched: logins land in the user's environment. One file per concern:
 *
 *   pam_envsched.c  the dispatcher: pam_sm_open_session / pam_sm_close_session
 *   conf.c          module arguments (policy=, resolver=, run_dir=, log_file=, exempt_users=, failure=,
 *                   cache=, debug)
 *   login.c         who and what: user, uid, service, tty, rhost, CHOS from the PAM environment
 *   resolve.c       prepare: the decision cache, else the resolver (../common/es_prepare.c); release
 *                   in C (../common/es_release.c), else the resolver
 *   shim.c          the resolver's shim lines: CHOS and the env operations into the PAM environment
 *   enter.c         trust checks of the pin, setns of the calling process, and back at close
 */
#ifndef ES_PAM_H
#define ES_PAM_H

#include <limits.h>
#include <sys/types.h>
#include <security/pam_modules.h>

#define ES_PREFIX "envsched: "
#include "../common/es_run.h"

#define ES_EXPORT __attribute__((visibility("default")))
#define ES_NAME_MAX 256         /* a CHOS value, with its NUL */
#define ES_MSG_MAX 1024
#define ES_DATA_KEY "envsched_session"

enum es_failure { ES_FAIL_CLOSED, ES_FAIL_DEFAULT, ES_FAIL_OPEN };

struct es_conf {
    char policy[PATH_MAX];
    char resolver[PATH_MAX];
    char run_dir[PATH_MAX];
    char exempt[1024];          /* comma-separated user names */
    char log_file[PATH_MAX];    /* the admin log (site.log_file): a cache hit's and a release's line */
    enum es_failure failure;
    int cache;                  /* cache=1 (default): the decision cache and shared views; cache=0 */
    int debug;
};

struct es_login {
    const char *user;           /* PAM_USER as the application set it: looked up, compared */
    const char *service, *tty, *rhost;  /* PAM items made printable: logged only (service: --job) */
    char shown_user[80];        /* PAM_USER made printable, for the log */
    char bufs[3][130];          /* what service, tty and rhost point to */
    uid_t uid;
    char chos[ES_NAME_MAX];
    char key[80];               /* pam-<uid>-<pid> */
    pid_t owner;                /* the calling process: it lives as long as the session */
};

/* What the resolver said (the shim protocol, src/envsched/shim.py). */
struct es_shim {
    char environment[80];
    char key[80];
    char pin[PATH_MAX];         /* "" for the host OS */
    char warning[ES_MSG_MAX];
    long uid;
};

/* The namespaces the session was opened in (descriptors, -1 for none): close_session goes back
 * to them before it releases the pin, so that the resolver it starts is the host's (its PID
 * namespace is the session process's own active one, /proc/self/ns/pid). */
struct es_host {
    int mnt, ipc, uts;
};

/* What close_session needs, kept with pam_set_data. */
struct es_session {
    char key[80];
    struct es_host host;
};

int es_conf_parse(pam_handle_t *pamh, int argc, const char **argv, struct es_conf *c);

int es_login_get(pam_handle_t *pamh, struct es_login *l, char *err, size_t errlen);
int es_login_exempt(const struct es_conf *c, const struct es_login *l);

/* es_login_get: 0, -1 (no user: deny), -2 (a bad request: the failure mode applies) */
/* prepare: 0 and the shim text in r->out (from the decision cache, or the resolver's), or the exit
 * status; user_file=0 asks for the defaults only (failure=default), ignoring CHOS and ~/.chos */
int es_resolve_prepare(const struct es_conf *c, const struct es_login *l, int user_file, struct es_run *r);
void es_resolve_release(pam_handle_t *pamh, const struct es_conf *c, const char *key);
void es_resolve_log(pam_handle_t *pamh, const struct es_run *r);

int es_shim_parse(const char *text, struct es_shim *s);
int es_shim_putenv(pam_handle_t *pamh, const char *text, const char *environment);

int es_enter(const struct es_conf *c, const struct es_shim *s, struct es_host *host, char *err, size_t errlen);
int es_leave(struct es_host *host);
void es_host_close(struct es_host *host);

#endif
