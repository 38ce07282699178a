/* es_cgroup_jobid / es_valid_jobid (plugins/torque/torque/job.c): the Torque starter's job id from
 * the text of /proc/self/cgroup. Input: that text (up to its first NUL). Oracle: an id it finds is
 * a valid job id that follows ":/torque/" in the text, whole. */
#include "fuzz.h"
#include "torque_starter.h"

static int follows_torque(const char *text, const char *id)
{
    size_t il = strlen(id);
    for (const char *p = strstr(text, ":/torque/"); p; p = strstr(p + 1, ":/torque/")) {
        const char *c = p + 9;
        if (strncmp(c, id, il) == 0 && (c[il] == '/' || c[il] == '\n' || c[il] == '\0'))
            return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fz_cstr(data, size);
    char id[64];

    memset(id, 0x5a, sizeof id);
    int rc = es_cgroup_jobid(text, id, sizeof id);
    CHECK(rc >= -1 && rc <= 1);
    if (rc == 1) {
        CHECK(fz_terminated(id, sizeof id));
        CHECK(es_valid_jobid(id));
        CHECK(follows_torque(text, id));
    }
    /* a small buffer: never written past */
    char small[8];
    memset(small, 0x5a, sizeof small);
    rc = es_cgroup_jobid(text, small, sizeof small);
    CHECK(rc >= -1 && rc <= 1);
    if (rc == 1)
        CHECK(fz_terminated(small, sizeof small) && es_valid_jobid(small));
    (void)es_valid_jobid(text);
    free(text);
    return 0;
}
