/* The job's pin, run_dir/<key>: prepared by the root prolog, or here through the resolver for
 * jobs that ran no prolog on this host (qrsh; slave tasks of a parallel job on other hosts).
 *
 * Only a pin made by root and recorded for our real uid is used: run_dir and the pin are
 * root's and not writable by others, `shim` (the resolver's protocol lines, written last) is
 * root's, and its `uid` line must be ours.
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
#include "starter.h"

#define ES_WAIT_MS 60000       /* for a pin another task of the job is preparing right now */

/* 1: read, 0: not there (yet), -1: there but untrusted or unreadable */
static int read_shim(const struct es_conf *c, const struct es_job *j, struct es_pin *p,
                     char *err, size_t errlen)
{
    p->dirfd = es_open_pin_dir(c->run_dir, j->key, err, errlen);
    if (p->dirfd < 0)
        return errno == ENOENT ? 0 : -1;
    ssize_t n = es_read_root_file(p->dirfd, "shim", p->shim, sizeof p->shim);
    if (n > 0)
        return 1;
    int e = n < 0 ? errno : EFBIG;
    close(p->dirfd);
    p->dirfd = -1;
    if (e == ENOENT)
        return 0;                       /* being prepared: shim is written last */
    if (e == EPERM)
        snprintf(err, errlen, "%s/%s/shim: not root's alone", c->run_dir, j->key);
    else if (e == EFBIG)
        snprintf(err, errlen, "%s/%s/shim: unreadable or too long", c->run_dir, j->key);
    else
        snprintf(err, errlen, "%s/%s/shim: %s", c->run_dir, j->key, strerror(e));
    return -1;
}

/* check the pin is ours and note what the shim says */
static int check(struct es_pin *p, char *err, size_t errlen)
{
    char copy[ES_SHIM_MAX], *save = NULL;
    long uid = -1;

    memcpy(copy, p->shim, sizeof copy);
    p->has_view = 0;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (strncmp(l, "uid ", 4) == 0)
            uid = es_parse_uid(l + 4);
        else if (strncmp(l, "pin ", 4) == 0)
            p->has_view = strcmp(l + 4, "-") != 0;
        else if (strncmp(l, "home ", 5) == 0)
            snprintf(p->home, sizeof p->home, "%s", l + 5);
    }
    if (uid < 0 || (uid_t)uid != getuid()) {
        snprintf(err, errlen, "the job's environment was prepared for uid %ld, not for %u", uid,
                 (unsigned)getuid());
        return -1;
    }
    return 0;
}

/* the job's pin prepared as root (../../common/es_prepare.c: the decision cache, else the
 * resolver with a clean environment). The request (ENVSCHED_REQUEST, CHOS) is the user's to choose
 * and is checked against the policy for the real uid; the queue is not the user's: it comes from
 * the job's config (job.c), never from $QUEUE */
static int prepare(const struct es_conf *c, const struct es_job *j, char *err, size_t errlen)
{
    char jobstep[80], inputs[1024], shim[ES_SHIM_MAX];
    int by_cache;
    struct es_prepare p;

    es_job_prepare(c, j, jobstep, sizeof jobstep, &p);
    p.uid = getuid();
    p.request = getenv("ENVSCHED_REQUEST");
    p.chos = getenv("CHOS");
    if (es_prepare_inputs(&p, inputs, sizeof inputs) == 0)
        p.inputs = inputs;
    return es_prepare_pin(&p, shim, sizeof shim, &by_cache, err, errlen);
}

int es_pin_open(const struct es_conf *c, const struct es_job *j, struct es_pin *p,
                char *err, size_t errlen)
{
    struct timespec start, now, pause = {0, 20 * 1000 * 1000};
    int prepared = 0, rc;

    memset(p, 0, sizeof *p);
    p->dirfd = -1;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        rc = read_shim(c, j, p, err, errlen);
        if (rc < 0)
            return ENVSCHED_EXIT_SETUP_FAILED;
        if (rc > 0)
            return check(p, err, errlen) == 0 ? 0 : ENVSCHED_EXIT_NOT_PERMITTED;
        if (!prepared) {
            /* no pin, or one being prepared by another task: the resolver reuses a complete
             * pin, and says "exists already" about one in the making, which we then wait for */
            prepared = 1;
            char why[1024];
            int status = prepare(c, j, why, sizeof why);
            if (status != 0 && !(status == ENVSCHED_EXIT_USAGE && strstr(why, "exists already"))) {
                snprintf(err, errlen, "%s", why);
                return status;
            }
            continue;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 > ES_WAIT_MS) {
            snprintf(err, errlen, "the job's environment was not ready after %d s (%s/%s)",
                     ES_WAIT_MS / 1000, c->run_dir, j->key);
            return ENVSCHED_EXIT_SETUP_FAILED;
        }
        nanosleep(&pause, NULL);
    }
}
