/* Prepare a job's pin: the decision cache first, then the resolver. See es_prepare.h. */
#include <stdio.h>
#include <string.h>

#include "es_cache.h"
#include "es_prepare.h"

#define ES_PREPARE_CACHE_WAIT_MS 5000      /* a hung home directory: then the resolver decides */

void es_config_id(const char *policy, const char *const *binds, int nbinds, const char *host_tools,
                  char out[17])
{
    static char text[(ES_PREPARE_MAX_BINDS + 3) * (PATH_MAX + 1)];
    size_t len = (size_t)snprintf(text, sizeof text, "%s", policy);
    for (int i = 0; i < nbinds && i < ES_PREPARE_MAX_BINDS && len < sizeof text; i++)
        len += (size_t)snprintf(text + len, sizeof text - len, "\n%s", binds[i]);
    if (len < sizeof text)
        snprintf(text + len, sizeof text - len, "\n%s", host_tools ? host_tools : "");
    es_cache_name(text, out);
}

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

int es_prepare_inputs(const struct es_prepare *p, char *out, size_t cap)
{
    const char *values[] = {p->request, p->chos, p->partition, p->account};
    char config[17];

    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        if (values[i] && strpbrk(values[i], "\t\r\n") != NULL)
            return -1;
    es_config_id(p->policy, p->binds, p->nbinds, p->host_tools, config);
    if (p->extra_inputs && strpbrk(p->extra_inputs, "\r\n") != NULL)
        return -1;
    int n = snprintf(out, cap, "uid=%u\trequest=%s\tchos=%s\tqueue=%s\taccount=%s\tconfig=%s%s%s",
                     (unsigned)p->uid, or_empty(p->request), or_empty(p->chos), or_empty(p->partition),
                     or_empty(p->account), config, p->no_user_file ? "\tuser_file=0" : "",
                     or_empty(p->extra_inputs));
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* 1: served from the cache (shim filled); 0: the resolver decides */
static int from_cache(struct es_prepare *p, char *shim, size_t shimlen)
{
    static struct es_user user;
    static struct es_cache_hit hit;

    if (!p->cache)
        return snprintf(p->miss, sizeof p->miss, "off (cache=0)"), 0;
    if (p->inputs == NULL || strpbrk(p->inputs, "\r\n") != NULL)
        return snprintf(p->miss, sizeof p->miss, "no inputs line"), 0;
    if (es_user_lookup(p->uid, &user) != 0)
        return snprintf(p->miss, sizeof p->miss, "uid %u unknown to NSS", (unsigned)p->uid), 0;
    int named = (p->request && p->request[0]) || (p->chos && p->chos[0]);
    struct es_cache_job cj = {p->run_dir, p->inputs, p->key, !named && !p->no_user_file, p->owner, or_empty(p->log_file),
                              p->scheduler, p->job};
    if (es_cache_try(&cj, &user, ES_PREPARE_CACHE_WAIT_MS, &hit, p->miss, sizeof p->miss) != ES_CACHE_HIT)
        return 0;
    snprintf(shim, shimlen, "%s", hit.shim);
    return 1;
}

int es_prepare_pin(struct es_prepare *p, char *shim, size_t shimlen, int *by_cache,
                   char *err, size_t errlen)
{
    static struct es_run own;
    struct es_run *r = p->run ? p->run : &own;
    char uid[16], owner[16];
    char a_req[300], a_chos[300], a_part[300], a_acct[300], a_inputs[2048];
    char *argv[32 + 2 * ES_PREPARE_MAX_BINDS];
    int n = 0;

    *by_cache = 0;
    p->miss[0] = '\0';
    r->status = 0;                      /* what the caller reads of the run: nothing yet */
    r->err[0] = '\0';
    r->err_len = 0;
    if (p->nbinds > ES_PREPARE_MAX_BINDS) {
        snprintf(err, errlen, ES_PREFIX "more than %d binds in the configuration", ES_PREPARE_MAX_BINDS);
        r->status = ENVSCHED_EXIT_POLICY_INVALID;
    } else if (strlen(or_empty(p->request)) > 255 || strlen(or_empty(p->chos)) > 255 ||
               strlen(or_empty(p->partition)) > 255 || strlen(or_empty(p->account)) > 255) {
        snprintf(err, errlen, ES_PREFIX "the job's request, CHOS, queue or account is longer than 255 characters");
        r->status = ENVSCHED_EXIT_REFUSED;
    }
    if (r->status != 0) {               /* as if the resolver had said it: its line, its status */
        r->err_len = (size_t)snprintf(r->err, sizeof r->err, "%s\n", err);
        return r->status;
    }
    /* 1. the same inputs as an earlier job on this node, all unchanged: its decision, no resolver */
    if (from_cache(p, shim, shimlen)) {
        *by_cache = 1;
        r->status = 0;                                  /* no resolver ran: nothing it said */
        r->err[0] = '\0';
        r->err_len = 0;
        return 0;
    }
    /* 2. the resolver decides and prepares; values the user controls go as --opt=VALUE */
    snprintf(uid, sizeof uid, "%u", (unsigned)p->uid);
    snprintf(owner, sizeof owner, "%d", (int)p->owner);
    char *fixed[] = {(char *)p->resolver, "--policy", (char *)p->policy, "prepare", "--format", "shim",
                     "--reuse", "--record-local", "--gc", "--key", (char *)p->key, "--user", uid,
                     "--job", (char *)p->job, "--owner-pid", owner, NULL};
    for (int i = 0; fixed[i]; i++)
        argv[n++] = fixed[i];
    if (p->fallback_key) {
        argv[n++] = "--fallback-key";
        argv[n++] = (char *)p->fallback_key;
    }
    if (p->cache) {
        argv[n++] = "--shared-view";
        argv[n++] = "--decision-cache";
    }
    if (p->no_user_file)
        argv[n++] = "--no-user-file";
    snprintf(a_chos, sizeof a_chos, "--chos-var=%s", or_empty(p->chos));
    argv[n++] = a_chos;
    if (p->inputs) {
        snprintf(a_inputs, sizeof a_inputs, "--inputs=%s", p->inputs);
        argv[n++] = a_inputs;
    }
    if (p->request && p->request[0]) {
        snprintf(a_req, sizeof a_req, "--request=%s", p->request);
        argv[n++] = a_req;
    }
    if (p->partition && p->partition[0]) {
        snprintf(a_part, sizeof a_part, "--partition=%s", p->partition);
        argv[n++] = a_part;
    }
    if (p->account && p->account[0]) {
        snprintf(a_acct, sizeof a_acct, "--account=%s", p->account);
        argv[n++] = a_acct;
    }
    for (int i = 0; i < p->nbinds; i++) {
        argv[n++] = "--bind";
        argv[n++] = (char *)p->binds[i];
    }
    if (p->host_tools && p->host_tools[0]) {
        argv[n++] = "--bind";
        argv[n++] = (char *)p->host_tools;
    }
    argv[n] = NULL;
    if (es_run(argv, 1, r) != 0) {
        es_user_line(r, err, errlen);
        return r->status > 0 ? r->status : ENVSCHED_EXIT_SETUP_FAILED;
    }
    if (shim != r->out)
        snprintf(shim, shimlen, "%s", r->out);
    return 0;
}
