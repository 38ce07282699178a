/* es_jobrec_parse (plugins/common/es_jobrec.c): a Slurm step reads the job record the job prolog
 * wrote (uid, user, queue, account lines) and takes the job's partition and account from it.
 * Input: the record's text (up to its first NUL). Oracle: on success the uid fits uid_t, and the
 * partition and account are terminated, at most 255 characters, and each is the value of a
 * "queue"/"account" line of the text (or empty when there is none). */
#include "fuzz.h"
#include "es_jobrec.h"

static int is_line_value(const char *text, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    if (vl == 0)
        return 1;
    for (const char *l = text; l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, name, nl) == 0 && l[nl] == ' ' && strncmp(l + nl + 1, value, vl) == 0 &&
            (l[nl + 1 + vl] == '\n' || l[nl + 1 + vl] == '\0'))
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fz_cstr(data, size);
    struct es_jobrec rec;

    if (es_jobrec_parse(text, &rec) == 0) {
        CHECK(rec.uid != (uid_t)-1);
        CHECK(fz_terminated(rec.partition, sizeof rec.partition));
        CHECK(fz_terminated(rec.account, sizeof rec.account));
        CHECK(strlen(rec.partition) <= 255 && strlen(rec.account) <= 255);
        CHECK(is_line_value(text, "queue", rec.partition));
        CHECK(is_line_value(text, "account", rec.account));
    }
    free(text);
    return 0;
}
