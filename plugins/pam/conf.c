/* Module arguments, from the service's /etc/pam.d line:
 *
 *   policy=PATH  resolver=PATH  run_dir=PATH  log_file=PATH  exempt_users=NAME[,NAME...]
 *   failure=closed|default|open  cache=1|0  debug
 *
 * log_file= is the policy's site.log_file (the line a cache hit or a release in C writes there);
 * cache=0 turns the decision cache and shared views off (site.decision_cache = false).
 *
 * An unknown or malformed argument is an error (the session is denied whatever failure= says):
 * a typo must not silently turn the policy off. Paths must be absolute.
 */
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <security/pam_ext.h>

#include "es_pam.h"

static int path_arg(pam_handle_t *pamh, const char *arg, const char *value, char *dst, size_t len)
{
    if (value[0] != '/' || strstr(value, "/../") || strlen(value) >= len) {
        pam_syslog(pamh, LOG_ERR, ES_PREFIX "%s: not an absolute path (or too long)", arg);
        return -1;
    }
    snprintf(dst, len, "%s", value);
    return 0;
}

int es_conf_parse(pam_handle_t *pamh, int argc, const char **argv, struct es_conf *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->policy, sizeof c->policy, "/etc/envsched/policy.toml");
    snprintf(c->resolver, sizeof c->resolver, "/opt/envsched/bin/envsched");
    snprintf(c->run_dir, sizeof c->run_dir, "/run/envsched");
    snprintf(c->exempt, sizeof c->exempt, "root");
    c->failure = ES_FAIL_CLOSED;
    c->cache = 1;

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int rc = 0;
        if (strncmp(a, "policy=", 7) == 0)
            rc = path_arg(pamh, a, a + 7, c->policy, sizeof c->policy);
        else if (strncmp(a, "resolver=", 9) == 0)
            rc = path_arg(pamh, a, a + 9, c->resolver, sizeof c->resolver);
        else if (strncmp(a, "run_dir=", 8) == 0)
            rc = path_arg(pamh, a, a + 8, c->run_dir, sizeof c->run_dir);
        else if (strncmp(a, "log_file=", 9) == 0)
            rc = path_arg(pamh, a, a + 9, c->log_file, sizeof c->log_file);
        else if (strcmp(a, "cache=0") == 0 || strcmp(a, "cache=1") == 0)
            c->cache = a[6] == '1';
        else if (strncmp(a, "exempt_users=", 13) == 0 && strlen(a + 13) < sizeof c->exempt)
            snprintf(c->exempt, sizeof c->exempt, "%s", a + 13);
        else if (strcmp(a, "failure=closed") == 0)
            c->failure = ES_FAIL_CLOSED;
        else if (strcmp(a, "failure=default") == 0)
            c->failure = ES_FAIL_DEFAULT;
        else if (strcmp(a, "failure=open") == 0)
            c->failure = ES_FAIL_OPEN;
        else if (strcmp(a, "debug") == 0)
            c->debug = 1;
        else {
            pam_syslog(pamh, LOG_ERR, ES_PREFIX "unknown or bad argument '%s' (known: policy= resolver= "
                       "run_dir= log_file= exempt_users= failure=closed|default|open cache=0|1 debug)", a);
            rc = -1;
        }
        if (rc != 0)
            return -1;
    }
    return 0;
}
