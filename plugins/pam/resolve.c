/* The resolver: `envsched prepare` at open, `envsched release` at close, run through
 * plugins/common/es_run.c (absolute path, clean environment, stdin /dev/null, descriptors above 2
 * closed, 120 s limit). The user's values go as whole --opt=VALUE argv elements.
 *
 * The application may ignore SIGCHLD or catch it (sshd's monitor installs a handler later);
 * es_run must reap its own child, so SIGCHLD is the default while it runs.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <security/pam_ext.h>

#include "es_pam.h"

static int run(char *const argv[], struct es_run *r)
{
    struct sigaction dfl, old;

    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGCHLD, &dfl, &old);
    int rc = es_run(argv, 1, r);
    sigaction(SIGCHLD, &old, NULL);
    return rc;
}

int es_resolve_prepare(const struct es_conf *c, const struct es_login *l, int user_file, struct es_run *r)
{
    char uid[16], owner[16], a_chos[ES_NAME_MAX + 16], a_job[160];
    char *argv[32];
    int n = 0;

    snprintf(uid, sizeof uid, "%u", (unsigned)l->uid);
    snprintf(owner, sizeof owner, "%d", (int)l->owner);
    snprintf(a_chos, sizeof a_chos, "--chos-var=%s", user_file ? l->chos : "");
    snprintf(a_job, sizeof a_job, "--job=pam/%.64s", l->service);
    char *fixed[] = {(char *)c->resolver, "--policy", (char *)c->policy, "prepare", "--format", "shim",
                     "--reuse", "--record-local", "--gc", "--key", (char *)l->key, "--user", uid,
                     "--owner-pid", owner, a_job, a_chos, NULL};
    for (int i = 0; fixed[i]; i++)
        argv[n++] = fixed[i];
    if (!user_file)
        argv[n++] = "--no-user-file";
    argv[n] = NULL;
    return run(argv, r) == 0 ? 0 : (r->status > 0 ? r->status : ENVSCHED_EXIT_SETUP_FAILED);
}

void es_resolve_release(pam_handle_t *pamh, const struct es_conf *c, const char *key)
{
    char *argv[] = {(char *)c->resolver, "--policy", (char *)c->policy, "release", "--key", (char *)key,
                    "--quiet", NULL};
    struct es_run r;

    if (run(argv, &r) != 0) {
        es_resolve_log(pamh, &r);
        pam_syslog(pamh, LOG_ERR, ES_PREFIX "key %s: not released (resolver exit %d); `envsched gc` "
                   "collects it once the session's process is gone", key, r.status);
    }
}

/* every line the resolver wrote, to syslog */
void es_resolve_log(pam_handle_t *pamh, const struct es_run *r)
{
    char copy[sizeof r->err];
    char *save = NULL;

    memcpy(copy, r->err, sizeof copy);
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        pam_syslog(pamh, LOG_ERR, ES_PREFIX "resolver: %s", line);
}
