/* Prepare at open: the decision cache (an earlier login's decision whose inputs all still hold:
 * no Python), else `envsched prepare` (../common/es_prepare.c). Release at close: in C
 * (../common/es_release.c), else `envsched release`. The resolver runs through
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

#include <sys/stat.h>

#include "es_pam.h"
#include "../common/es_prepare.h"
#include "../common/es_release.h"

/* SIGCHLD as the default while our own children run (the resolver, the decision cache's child) */
static void sigchld_default(struct sigaction *old)
{
    struct sigaction dfl;

    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGCHLD, &dfl, old);
}

static int run(char *const argv[], struct es_run *r)
{
    struct sigaction old;

    sigchld_default(&old);
    int rc = es_run(argv, 1, r);
    sigaction(SIGCHLD, &old, NULL);
    return rc;
}

int es_resolve_prepare(const struct es_conf *c, const struct es_login *l, int user_file, struct es_run *r)
{
    char job[160], inputs[1024], extra[64], err[ES_MSG_MAX];
    struct es_prepare p;
    struct stat ns;
    int by_cache = 0;

    memset(&p, 0, sizeof p);
    p.resolver = c->resolver;
    p.policy = c->policy;
    p.run_dir = c->run_dir;
    p.log_file = c->log_file;
    p.host_tools = "";
    p.cache = c->cache;
    p.scheduler = "pam";
    p.key = l->key;
    snprintf(job, sizeof job, "pam/%.64s", l->service);
    p.job = job;
    p.uid = l->uid;
    p.owner = l->owner;
    p.chos = user_file ? l->chos : "";
    p.no_user_file = !user_file;
    p.run = r;
    /* the session's mount namespace is an input: a service may run in one of its own, where the
     * views made in another are not mounted (a miss there, never a view of another namespace's) */
    snprintf(extra, sizeof extra, "\tmntns=%lu", stat("/proc/self/ns/mnt", &ns) == 0 ? (unsigned long)ns.st_ino : 0UL);
    p.extra_inputs = extra;
    if (es_prepare_inputs(&p, inputs, sizeof inputs) == 0)
        p.inputs = inputs;
    struct sigaction old;
    sigchld_default(&old);
    int rc = es_prepare_pin(&p, r->out, sizeof r->out, &by_cache, err, sizeof err);
    sigaction(SIGCHLD, &old, NULL);
    return rc;
}

void es_resolve_release(pam_handle_t *pamh, const struct es_conf *c, const char *key)
{
    char why[1024];
    struct es_run r;

    /* a pin that needs nothing but its view detached: in C; else (node hooks, isolation
     * namespaces, image mounts; no pin under run_dir=, which may not be the policy's) the resolver */
    int released = es_release_logged(c->run_dir, key, c->log_file, "", why, sizeof why);
    if (released == ES_RELEASED)
        return;
    if (released == ES_RELEASE_FAILED)
        pam_syslog(pamh, LOG_ERR, ES_PREFIX "key %s: %s; the resolver tries", key, why);
    char *argv[] = {(char *)c->resolver, "--policy", (char *)c->policy, "release", "--key", (char *)key,
                    "--quiet", NULL};
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
