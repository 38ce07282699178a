/* es_launch_decode (plugins/common/es_launch.c): ENVSCHED_LAUNCH, which the Slurm plugin's stub
 * (plugins/slurm-spank/launch_stub.c) reads from the job's environment, the user's to forge; and
 * es_launcher_parse on the same bytes as shim text. Input: the variable's value (up to a NUL). */
#include "fuzz.h"
#include "es_launch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fz_cstr(data, size);
    size_t len = strlen(text);
    char *out = malloc(len + 1), *argv[ES_LAUNCH_MAX_ARGS + 2];
    int tell = -1;
    static struct es_launcher l;

    if (out == NULL)
        abort();
    int n = es_launch_decode(text, out, len + 1, argv, ES_LAUNCH_MAX_ARGS + 1, &tell);
    CHECK(n == -1 || (n >= 1 && n <= ES_LAUNCH_MAX_ARGS + 1));
    if (n > 0) {
        CHECK(tell == 0 || tell == 1);
        CHECK(argv[n] == NULL);
        for (int i = 0; i < n; i++)
            CHECK(argv[i] >= out && argv[i] < out + len + 1 && argv[i][0] != '\0' &&
                  argv[i] + strlen(argv[i]) < out + len + 1);
        /* one way to write each value: encoding what was decoded gives the input back */
        char *again = malloc(len + 1);
        if (again == NULL)
            abort();
        CHECK(es_launch_encode(again, len + 1, tell, argv, n) == (int)len && strcmp(again, text) == 0);
        free(again);
    }
    int rc = es_launcher_parse(text, &l);
    CHECK(rc == 0 || rc == -1);
    CHECK(l.argc >= 0 && l.argc <= ES_LAUNCH_MAX_ARGS && l.argv[l.argc] == NULL);
    CHECK(rc == 0 || l.argc == 0);
    for (int i = 0; i < l.argc; i++)
        CHECK(l.argv[i][0] != '\0' && !strchr(l.argv[i], '\n') && fz_terminated(l.argv[i], l.buf + sizeof l.buf - l.argv[i]));
    CHECK(l.argc == 0 || l.argv[0][0] == '/');
    free(out);
    free(text);
    return 0;
}
