/* The job epilog (root, once per job per node, also after scancel or a killed step):
 * release the job's views and remove its record (jobrec.c). Defining it costs slurmd an extra
 * slurmstepd per job (~30 ms); it is the one place that runs exactly when the job is over on
 * this node.
 *
 * Every view of the job on this host (keys slurm-<job>-<node>[.<step>]) is released in C
 * (plugins/common/es_release.c: detach the pinned namespace, remove the pin) and written to the
 * admin log (log_file=). A view that needs more (a node epilog, isolation namespaces, image
 * mounts to let go when idle) is left to `envsched release --with-steps`, run once for the job. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envsched_spank.h"
#include "../common/es_release.h"
#include "../common/es_trust.h"

#define ES_MAX_KEYS 64

/* The job's keys in run_dir: slurm-<job> followed by '-' or '.', at most `cap`. */
static int job_keys(const char *run_dir, const char *prefix, char keys[][128], int cap)
{
    size_t len = strlen(prefix);
    int n = 0;
    DIR *d = opendir(run_dir);

    if (d == NULL)
        return 0;
    for (struct dirent *e; n < cap && (e = readdir(d)) != NULL;)
        if (strncmp(e->d_name, prefix, len) == 0 && (e->d_name[len] == '-' || e->d_name[len] == '.') &&
            strlen(e->d_name) < 128)
            snprintf(keys[n++], 128, "%s", e->d_name);
    closedir(d);
    return n;
}

int es_job_epilog(spank_t sp)
{
    uint32_t job = 0;
    char prefix[64], keys[ES_MAX_KEYS][128], why[PATH_MAX + 512], line[PATH_MAX + 1024];
    struct es_run r;

    if (spank_get_item(sp, S_JOB_ID, &job) != ESPANK_SUCCESS) {
        const char *id = getenv("SLURM_JOB_ID");
        if (id == NULL)
            return 0;
        job = (uint32_t)strtoul(id, NULL, 10);
    }
    snprintf(prefix, sizeof prefix, "slurm-%u", job);
    /* run_dir and every directory above it root's: else the resolver decides (and says why) */
    int resolver = es_trusted_dir(es_cfg.run_dir, why, sizeof why) != 0;
    int n = resolver ? 0 : job_keys(es_cfg.run_dir, prefix, keys, ES_MAX_KEYS);
    resolver |= n == ES_MAX_KEYS;
    int failed = 0;
    for (int i = 0; i < n; i++) {
        char fields[96];
        snprintf(fields, sizeof fields, " scheduler=slurm job=%u by=epilog", job);
        int rc = es_release_logged(es_cfg.run_dir, keys[i], es_cfg.log_file, fields, why, sizeof why);
        if (rc == ES_RELEASE_RESOLVER) {
            resolver = 1;
        } else if (rc == ES_RELEASE_FAILED) {
            snprintf(line, sizeof line, "event=failed step=release scheduler=slurm job=%u key=%.127s reason=\"%.2000s\"",
                     job, keys[i], why);
            es_admin_log(es_cfg.log_file, line);
            slurm_error(ES_PREFIX "job %u: releasing %s failed: %s", job, keys[i], why);
            failed = 1;
        }
    }
    if (resolver) {
        char *argv[] = {es_cfg.resolver, "--policy", es_cfg.policy, "release", "--key", prefix,
                        "--with-steps", "--quiet", NULL};
        if (es_run(argv, 0, &r) != 0) {
            es_replay_log(&r, 1);
            slurm_error(ES_PREFIX "job %u: releasing its views failed (exit %d)", job, r.status);
            failed = 1;
        }
    }
    es_jobrec_remove(es_cfg.run_dir, job);
    return failed ? -1 : 0;
}
