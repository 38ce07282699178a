/* es_spool_request (plugins/uge/starter/job.c): the C prolog's reading of ENVSCHED_REQUEST and CHOS
 * from execd's `environment` file, whose values are the job's own (-v, the JSV's). Oracle: a value
 * it gives is at most 255 bytes, holds no NUL, no line break and no escaped one ("\\n", which the
 * shepherd would turn into one), and is a value the input spells as NAME=VALUE at a line start or
 * after '=' signs; where it gives none, both are empty. tests/fuzz/test_fuzz_python.py
 * (test_spool_request_same_in_c) compares it with the Python prolog's parse_environment. */
#include "fuzz.h"
#include "starter.h"

static void check_value(const char *v, const uint8_t *data, size_t size)
{
    size_t n = strlen(v);
    CHECK(n <= 255);
    CHECK(strchr(v, '\n') == NULL && strstr(v, "\\n") == NULL);
    if (n > 0)
        CHECK(memmem(data, size, v, n) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct es_job j;
    char *text = malloc(size + 1);

    if (text == NULL)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    memset(&j, 'x', sizeof j);
    int rc = es_spool_request(text, size, &j);
    CHECK(rc == 0 || rc == 1);
    if (rc == 1) {
        check_value(j.request, data, size);
        check_value(j.chos, data, size);
    } else {
        CHECK(j.request[0] == '\0' && j.chos[0] == '\0');
    }
    free(text);
    return 0;
}
