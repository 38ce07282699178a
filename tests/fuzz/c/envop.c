/* es_envop_parse / es_envop_value (plugins/common/es_envop.c): the text after "env " of a shim line,
 * "ACTION NAME [VALUE]" (src/envsched/shim.py writes it), shared by every C shim.
 * Input: LINE, optionally followed by a NUL and the variable's old value. */
#include "fuzz.h"
#include "es_envop.h"

static int is_action(const char *a)
{
    return !strcmp(a, "set") || !strcmp(a, "prepend") || !strcmp(a, "append") || !strcmp(a, "unset");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = fz_cstr(data, size), *orig = strdup(line), *old = NULL;
    size_t len = strlen(line);
    struct es_envop op;

    if (orig == NULL)
        abort();
    if (len < size)
        old = fz_cstr(data + len + 1, size - len - 1);
    int rc = es_envop_parse(line, &op);
    CHECK(rc == 0 || rc == -1);
    if (rc == 0) {
        CHECK(op.action && op.name && op.value);
        CHECK(is_action(op.action));
        CHECK(op.name >= line && op.name < line + len + 1 && op.name[0] != '\0' && !strchr(op.name, ' '));
        CHECK(op.value[0] == '\0' || (op.value >= line && op.value + strlen(op.value) <= line + len));
        /* a line as shim.py writes it, "ACTION NAME VALUE" with single blanks, means exactly that */
        const char *sp1 = strchr(orig, ' ');
        if (orig[0] != ' ' && sp1 && sp1[1] != ' ' && sp1[1] != '\0') {
            const char *name = sp1 + 1, *sp2 = strchr(name, ' ');
            size_t nlen = sp2 ? (size_t)(sp2 - name) : strlen(name);
            CHECK((size_t)(sp1 - orig) == strlen(op.action) && !strncmp(orig, op.action, strlen(op.action)));
            CHECK(nlen == strlen(op.name) && !strncmp(name, op.name, nlen));
            CHECK(strcmp(op.value, sp2 ? sp2 + 1 : "") == 0);
        }
        if (strcmp(op.action, "unset") != 0) {
            char *v = es_envop_value(&op, old);
            CHECK(v != NULL);
            size_t vl = strlen(op.value);
            if (!strcmp(op.action, "set") || old == NULL || old[0] == '\0') {
                CHECK(strcmp(v, op.value) == 0);
            } else {
                size_t ol = strlen(old);
                CHECK(strlen(v) == ol + 1 + vl);
                if (!strcmp(op.action, "prepend"))
                    CHECK(!strncmp(v, op.value, vl) && v[vl] == ':' && !strcmp(v + vl + 1, old));
                else
                    CHECK(!strncmp(v, old, ol) && v[ol] == ':' && !strcmp(v + ol + 1, op.value));
            }
            free(v);
        }
    }
    free(line);
    free(orig);
    free(old);
    return 0;
}
