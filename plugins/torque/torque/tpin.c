/* The job's pin, run_dir/torque-<jobid>: prepared by the prologue (when the submit filter told
 * it the job's request) or here, once per job per node, by the resolver.
 *
 * The same trust rules as the Grid Engine starter (plugins/uge/starter/pin.c): run_dir, the
 * pin directory and its `shim` are root's and not writable by group or others, opened with
 * O_NOFOLLOW; the shim's `uid` line must be the job owner's. A pin is joined only if its
 * `inputs` (the raw request it was prepared for) equal this job's: a job whose CHOS changed
 * after the prologue ran (qalter -v) gets a view of its own under torque-<jobid>.v.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../common/es_trust.h"
#include "torque_starter.h"

#define ES_WAIT_MS 60000        /* for a pin another task of the job is preparing right now */

/* 1: read and ours, 0: not there or another request's, -1: untrusted or another user's */
static int read_pin(const struct es_conf *c, const struct es_tjob *j, const char *key, int want_inputs,
                    struct es_tpin *p, char *err, size_t errlen)
{
    char inputs[2 * ES_TORQUE_INPUTS_MAX], want[ES_TORQUE_INPUTS_MAX + 8];   /* inputs: with pelog.c's fields */
    int dirfd = es_open_pin_dir(c->run_dir, key, err, errlen);

    if (dirfd < 0)
        return errno == ENOENT ? 0 : -1;
    if (es_read_root_file(dirfd, "shim", p->shim, sizeof p->shim) < 0) {
        int e = errno;
        close(dirfd);
        if (e == ENOENT)
            return 0;                      /* being prepared (shim is written last) */
        snprintf(err, errlen, "%s/%s/shim: %s", c->run_dir, key, strerror(e));
        return -1;
    }
    /* the job's inputs, exactly, or followed by what the C prologue adds after a tab (pin=, the
     * version stamped at submit; config=, the starter's configuration: pelog.c) */
    snprintf(want, sizeof want, "%s\n", j->inputs);
    size_t wl = strlen(j->inputs);
    if (want_inputs && (es_read_root_file(dirfd, "inputs", inputs, sizeof inputs) < 0 ||
                        (strcmp(inputs, want) != 0 && !(strncmp(inputs, j->inputs, wl) == 0 && inputs[wl] == '\t')))) {
        close(dirfd);
        return 0;                          /* prepared for another request */
    }
    long uid = -1;
    p->has_view = 0;
    char copy[ES_SHIM_MAX], *save = NULL;
    memcpy(copy, p->shim, sizeof copy);
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (strncmp(l, "uid ", 4) == 0)
            uid = es_parse_uid(l + 4);
        else if (strncmp(l, "pin ", 4) == 0)
            p->has_view = strcmp(l + 4, "-") != 0;
    }
    if (uid < 0 || (uid_t)uid != j->uid) {
        close(dirfd);
        snprintf(err, errlen, "the job's environment was prepared for uid %ld, not for %u", uid, (unsigned)j->uid);
        return -1;
    }
    p->dirfd = dirfd;
    snprintf(p->key, sizeof p->key, "%s", key);
    return 1;
}

/* the resolver prepares the job's pin (../../common/es_prepare.c, the sequence every shim uses),
 * under the job's key or, where the prologue pinned it for another request, the fallback key;
 * the key it used in `key`. Without the decision cache here (cache off): the inputs the prologue
 * stores (envsched_torque.py: inputs()) do not name the starter's configuration (config=), and
 * Torque's prologue starts Python for every job anyway. */
static int prepare(const struct es_conf *c, const struct es_tjob *j, const char *chos, char *key, size_t keylen,
                   char *err, size_t errlen)
{
    char fallback[112], shim[ES_SHIM_MAX];
    struct es_prepare p;
    int by_cache;

    es_conf_prepare(c, &p);
    snprintf(fallback, sizeof fallback, "%s.v", j->key);
    p.cache = 0;
    p.scheduler = "torque";
    p.key = j->key;
    p.fallback_key = fallback;
    p.job = j->id;
    p.uid = j->uid;
    p.owner = getpid();                 /* this process becomes the job (batch shell or TM task) */
    p.partition = j->queue;
    p.account = j->account;
    p.chos = chos ? chos : "";
    p.inputs = j->inputs;
    int rc = es_prepare_pin(&p, shim, sizeof shim, &by_cache, err, errlen);
    if (rc != 0)
        return rc;
    for (char *l = shim; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, "key ", 4) == 0) {
            snprintf(key, keylen, "%.*s", (int)strcspn(l + 4, "\n"), l + 4);
            return 0;
        }
    snprintf(err, errlen, ES_PREFIX "the resolver named no pin for job %s", j->id);
    return ENVSCHED_EXIT_SETUP_FAILED;
}

int es_tpin_open(const struct es_conf *c, const struct es_tjob *j, const char *chos, struct es_tpin *p,
                 int *ran_resolver, char *err, size_t errlen)
{
    char fallback[112], key[96];
    struct timespec start, now, pause = {0, 20 * 1000 * 1000};

    memset(p, 0, sizeof *p);
    p->dirfd = -1;
    *ran_resolver = 0;
    snprintf(fallback, sizeof fallback, "%s.v", j->key);
    /* join without Python: a pin of this job prepared for exactly this request */
    for (int i = 0; i < 2; i++) {
        int rc = read_pin(c, j, i == 0 ? j->key : fallback, 1, p, err, errlen);
        if (rc != 0)
            return rc > 0 ? 0 : ENVSCHED_EXIT_NOT_PERMITTED;
    }
    *ran_resolver = 1;
    int status = prepare(c, j, chos, key, sizeof key, err, errlen);
    if (status == ENVSCHED_EXIT_USAGE && strstr(err, "exists already") != NULL)
        snprintf(key, sizeof key, "%s", j->key);     /* another task of the job is preparing it: wait */
    else if (status != 0)
        return status;
    /* the resolver reused or made `key`; its shim may still be in the making by another task */
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int rc = read_pin(c, j, key, 0, p, err, errlen);
        if (rc < 0)
            return ENVSCHED_EXIT_NOT_PERMITTED;
        if (rc > 0)
            return 0;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 > ES_WAIT_MS) {
            snprintf(err, errlen, "the job's environment was not ready after %d s (%s/%s)", ES_WAIT_MS / 1000,
                     c->run_dir, key);
            return ENVSCHED_EXIT_SETUP_FAILED;
        }
        nanosleep(&pause, NULL);
    }
}
