/* pam_envsched.so: a login (sshd, su -l, any PAM service a site chooses) lands in the user's
 * environment, as decided by the site policy from CHOS, ~/.chos and the defaults.
 *
 *   open_session   run the resolver (`envsched prepare --format shim --record-local --gc --key
 *                  pam-<uid>-<pid>`, owner: this process), join the prepared view with setns in
 *                  this process (the application forks the session from it), put CHOS and the
 *                  environment's env operations into the PAM environment, log one line
 *   close_session  back to the namespace the session was opened in, release the pin
 *
 * Failures follow failure=: closed (default) denies the session with the resolver's one line,
 * default retries with the site's defaults only, open continues on the host OS with a warning.
 * Only pam_sm_open_session and pam_sm_close_session are exported.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <security/pam_ext.h>

#include "es_pam.h"

static long ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

static void forget(pam_handle_t *pamh, void *data, int status)
{
    struct es_session *s = data;
    (void)pamh;
    (void)status;
    es_host_close(&s->host);
    free(s);
}

/* A session that cannot get its environment: deny (closed, default) or go on (open). */
static int fail(pam_handle_t *pamh, const struct es_conf *c, const struct es_login *l, const char *line)
{
    if (c->failure == ES_FAIL_OPEN) {
        pam_syslog(pamh, LOG_WARNING, ES_PREFIX "user=%s service=%s: %s; session on the host OS (failure=open)",
                   l->shown_user, l->service, line);
        pam_info(pamh, "%s; this session runs on the host OS", line);
        return PAM_SUCCESS;
    }
    pam_syslog(pamh, LOG_ERR, ES_PREFIX "user=%s service=%s tty=%s rhost=%s: session denied: %s",
               l->shown_user, l->service, l->tty, l->rhost, line);
    pam_error(pamh, "%s", line);
    return PAM_SESSION_ERR;
}

/* prepare, with failure=default's second try on the defaults alone; 0 or -1 with the user's line */
static int prepare(pam_handle_t *pamh, const struct es_conf *c, const struct es_login *l, struct es_run *r,
                   char *line, size_t len, char *fallback, size_t fblen)
{
    if (es_resolve_prepare(c, l, 1, r) == 0)
        return 0;
    es_resolve_log(pamh, r);
    es_user_line(r, line, len);
    /* no resolver, an untrusted one or an invalid policy: the defaults cannot be had either */
    if (c->failure != ES_FAIL_DEFAULT || r->status == ENVSCHED_EXIT_NOT_FOUND ||
        r->status == ENVSCHED_EXIT_POLICY_INVALID)
        return -1;
    if (es_resolve_prepare(c, l, 0, r) != 0) {
        es_resolve_log(pamh, r);
        return -1;
    }
    snprintf(fallback, fblen, "%s; using the default environment", line);
    return 0;
}

ES_EXPORT int pam_sm_open_session(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    struct es_conf c;
    struct es_login l;
    struct es_shim s;
    struct timespec t0;
    char line[ES_MSG_MAX], fallback[ES_MSG_MAX + 64] = "";
    struct es_host host = {-1, -1, -1};

    (void)flags;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (es_conf_parse(pamh, argc, argv, &c) != 0) {
        pam_error(pamh, ES_PREFIX "the login service is misconfigured (see the system log)");
        return PAM_SESSION_ERR;
    }
    int got = es_login_get(pamh, &l, line, sizeof line);
    if (got == -1) {                                    /* no user: nothing to apply a mode to */
        pam_syslog(pamh, LOG_ERR, "%s", line);
        return PAM_SESSION_ERR;
    }
    if (es_login_exempt(&c, &l)) {
        if (c.debug)
            pam_syslog(pamh, LOG_DEBUG, ES_PREFIX "user=%s service=%s: exempt", l.shown_user, l.service);
        return PAM_IGNORE;
    }
    if (got != 0)                                       /* a request we cannot pass on whole */
        return fail(pamh, &c, &l, line);
    if (geteuid() != 0) {
        snprintf(line, sizeof line, ES_PREFIX "the login service does not run as root: no environment");
        return fail(pamh, &c, &l, line);
    }

    struct es_run *r = malloc(sizeof *r);
    if (r == NULL)
        return fail(pamh, &c, &l, ES_PREFIX "out of memory");
    if (prepare(pamh, &c, &l, r, line, sizeof line, fallback, sizeof fallback) != 0) {
        free(r);
        return fail(pamh, &c, &l, line);
    }
    if (c.debug)
        es_resolve_log(pamh, r);
    /* only the pin asked for (pam-<uid>-<pid>), for this user: nothing else is joined or released */
    if (es_shim_parse(r->out, &s) != 0 || s.uid != (long)l.uid || (s.key[0] && strcmp(s.key, l.key) != 0)) {
        snprintf(line, sizeof line, ES_PREFIX "the resolver's answer is not for %s", l.shown_user);
        snprintf(s.key, sizeof s.key, "%s", l.key);   /* undo releases our key, never another */
        goto undo;
    }
    if (es_shim_putenv(pamh, r->out, s.environment) != 0) {
        snprintf(line, sizeof line, ES_PREFIX "cannot set the session's environment variables");
        goto undo;
    }
    if (s.pin[0] && es_enter(&c, &s, &host, line, sizeof line) != 0)
        goto undo;
    free(r);
    r = NULL;

    if (s.key[0]) {
        struct es_session *data = calloc(1, sizeof *data);
        if (data == NULL || pam_set_data(pamh, ES_DATA_KEY, data, forget) != PAM_SUCCESS) {
            free(data);
            es_host_close(&host);
            pam_syslog(pamh, LOG_ERR, ES_PREFIX "key %s: cannot keep it for close_session; "
                       "`envsched gc` collects it once this process is gone", s.key);
        } else {
            snprintf(data->key, sizeof data->key, "%s", s.key);
            data->host = host;
        }
    }
    if (fallback[0])
        pam_info(pamh, "%s", fallback);
    else if (s.warning[0])
        pam_info(pamh, ES_PREFIX "warning: %s", s.warning);
    pam_syslog(pamh, LOG_INFO, ES_PREFIX "user=%s service=%s tty=%s rhost=%s env=%s key=%s setup_ms=%ld%s",
               l.shown_user, l.service, l.tty, l.rhost, s.environment, s.key[0] ? s.key : "-", ms_since(&t0),
               fallback[0] ? " fallback=default" : "");
    return PAM_SUCCESS;

undo:
    free(r);
    if (s.key[0])
        es_resolve_release(pamh, &c, s.key);          /* still in the namespace we started in */
    return fail(pamh, &c, &l, line);
}

ES_EXPORT int pam_sm_close_session(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    struct es_conf c;
    const void *data = NULL;

    (void)flags;
    if (es_conf_parse(pamh, argc, argv, &c) != 0)
        return PAM_SUCCESS;
    if (pam_get_data(pamh, ES_DATA_KEY, &data) != PAM_SUCCESS || data == NULL)
        return PAM_SUCCESS;                            /* exempt, host OS without a record, or another process */
    struct es_session *s = (struct es_session *)data;
    int rc = es_leave(&s->host);
    if (rc != 0) {
        pam_syslog(pamh, LOG_ERR, ES_PREFIX "key %s: cannot return to the session's first namespace; "
                   "`envsched gc` collects the pin once this process is gone", s->key);
    } else {
        es_resolve_release(pamh, &c, s->key);
        if (c.debug)
            pam_syslog(pamh, LOG_DEBUG, ES_PREFIX "key %s: released", s->key);
    }
    pam_set_data(pamh, ES_DATA_KEY, NULL, NULL);
    return PAM_SUCCESS;
}
