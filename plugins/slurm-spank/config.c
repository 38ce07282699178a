/* plugstack.conf arguments. Unknown arguments are fatal: a typo must not silently
 * disable a site's policy.
 *
 *   required optional /usr/lib/.../envsched_spank.so policy=/etc/envsched/policy.toml \
 *       resolver=/opt/envsched/bin/envsched [run_dir=/run/envsched] [bind=/run/munge ...]
 *       [host_tools=/var/lib/envsched/slurm-tools] [log_file=/var/log/envsched.log] [validate=0|1] [debug]
 *
 *   host_tools= a directory written by `envsched site-config host-tools --scheduler slurm`:
 *               bound into every view, its bin/ prepended to the job's PATH, so a batch script
 *               in an environment can call srun, squeue, scontrol, scancel ...
 *   log_file=   the policy's site.log_file: the job epilog writes its releases there (epilog.c)
 *   validate=0  no submit-time check (the plugstack.conf seen from inside views uses it)
 *   cache=0     never apply a decision from the decision cache (../common/es_cache.h): the
 *               resolver runs for every job's first step on a node
 */
#include <stdio.h>
#include <string.h>

#include "envsched_spank.h"

struct es_config es_cfg = {
    .policy = "/etc/envsched/policy.toml",
    .resolver = "/usr/local/bin/envsched",
    .run_dir = "/run/envsched",
    .validate = 1,
    .cache = 1,
};

static int set_path(char *dst, const char *arg, const char *value)
{
    if (value[0] != '/' || strlen(value) >= PATH_MAX || strstr(value, "/../") != NULL) {
        slurm_error(ES_PREFIX "plugstack.conf: %s: not an absolute path: '%s'", arg, value);
        return -1;
    }
    strcpy(dst, value);
    return 0;
}

/* Pure but for slurm_error: the arguments into *cfg, whose defaults stay for those not given;
 * -1 on the first bad one (cfg then half-set). */
int es_config_parse_args(struct es_config *cfg, int ac, char **av)
{
    cfg->nbinds = 0;
    for (int i = 0; i < ac; i++) {
        const char *eq = strchr(av[i], '=');
        const char *value = eq ? eq + 1 : "";
        size_t klen = eq ? (size_t)(eq - av[i]) : strlen(av[i]);
        int rc;

        if (klen == 6 && strncmp(av[i], "policy", klen) == 0)
            rc = set_path(cfg->policy, "policy", value);
        else if (klen == 8 && strncmp(av[i], "resolver", klen) == 0)
            rc = set_path(cfg->resolver, "resolver", value);
        else if (klen == 7 && strncmp(av[i], "run_dir", klen) == 0)
            rc = set_path(cfg->run_dir, "run_dir", value);
        else if (klen == 4 && strncmp(av[i], "bind", klen) == 0) {
            if (cfg->nbinds == ES_MAX_BINDS) {
                slurm_error(ES_PREFIX "plugstack.conf: more than %d bind= arguments", ES_MAX_BINDS);
                return -1;
            }
            rc = set_path(cfg->binds[cfg->nbinds++], "bind", value);
        } else if (klen == 10 && strncmp(av[i], "host_tools", klen) == 0) {
            rc = set_path(cfg->host_tools, "host_tools", value);
        } else if (klen == 8 && strncmp(av[i], "log_file", klen) == 0) {
            rc = set_path(cfg->log_file, "log_file", value);
        } else if (klen == 8 && strncmp(av[i], "validate", klen) == 0) {
            if (strcmp(value, "0") != 0 && strcmp(value, "1") != 0) {
                slurm_error(ES_PREFIX "plugstack.conf: validate: expected 0 or 1, got '%s'", value);
                return -1;
            }
            cfg->validate = value[0] == '1';
            rc = 0;
        } else if (klen == 5 && strncmp(av[i], "cache", klen) == 0) {
            if (strcmp(value, "0") != 0 && strcmp(value, "1") != 0) {
                slurm_error(ES_PREFIX "plugstack.conf: cache: expected 0 or 1, got '%s'", value);
                return -1;
            }
            cfg->cache = value[0] == '1';
            rc = 0;
        } else if (strcmp(av[i], "debug") == 0) {
            cfg->debug = 1;
            rc = 0;
        } else {
            slurm_error(ES_PREFIX "plugstack.conf: unknown argument '%s' "
                        "(known: policy= resolver= run_dir= bind= host_tools= log_file= validate= cache= debug)", av[i]);
            return -1;
        }
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* Once per process (SPANK calls every plugin hook with the same arguments). */
int es_config_parse(int ac, char **av)
{
    static int parsed;

    if (parsed)
        return 0;
    if (es_config_parse_args(&es_cfg, ac, av) != 0)
        return -1;
    parsed = 1;
    return 0;
}
