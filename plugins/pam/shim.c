/* The resolver's shim lines (src/envsched/shim.py): what was decided, the pin, and the env
 * operations, which go into the PAM environment with CHOS=<name>. The application copies that
 * environment into the session (sshd over its own PATH, su after its own variables).
 *
 * prepend/append extend the PAM environment's value, else the calling process's own (sshd's and
 * su's PATH are theirs, not in the PAM environment), else the value alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <security/pam_ext.h>

#include "../common/es_envop.h"
#include "../common/es_trust.h"
#include "es_pam.h"

int es_shim_parse(const char *text, struct es_shim *s)
{
    char *copy = strdup(text), *save = NULL;

    memset(s, 0, sizeof *s);
    s->uid = -1;
    if (copy == NULL)
        return -1;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (strncmp(l, "environment ", 12) == 0)
            snprintf(s->environment, sizeof s->environment, "%s", l + 12);
        else if (strncmp(l, "key ", 4) == 0)
            snprintf(s->key, sizeof s->key, "%s", strcmp(l + 4, "-") == 0 ? "" : l + 4);
        else if (strncmp(l, "pin ", 4) == 0)
            snprintf(s->pin, sizeof s->pin, "%s", strcmp(l + 4, "-") == 0 ? "" : l + 4);
        else if (strncmp(l, "uid ", 4) == 0)
            s->uid = es_parse_uid(l + 4);
        else if (strncmp(l, "warning ", 8) == 0)
            snprintf(s->warning, sizeof s->warning, "%s", l + 8);
    }
    free(copy);
    return s->environment[0] && s->uid >= 0 ? 0 : -1;
}

static int put(pam_handle_t *pamh, const char *name, const char *value)
{
    size_t len = strlen(name) + strlen(value) + 2;
    char *entry = malloc(len);
    if (entry == NULL)
        return -1;
    snprintf(entry, len, "%s=%s", name, value);
    int rc = pam_putenv(pamh, entry) == PAM_SUCCESS ? 0 : -1;
    free(entry);
    return rc;
}

static int apply(pam_handle_t *pamh, char *line)
{
    struct es_envop op;

    if (es_envop_parse(line, &op) != 0)
        return -1;
    if (strcmp(op.action, "unset") == 0) {
        if (pam_getenv(pamh, op.name) != NULL)
            return pam_putenv(pamh, op.name) == PAM_SUCCESS ? 0 : -1;    /* "NAME" alone removes it */
        return 0;
    }
    const char *old = pam_getenv(pamh, op.name);
    if (old == NULL || old[0] == '\0')
        old = getenv(op.name);
    char *value = es_envop_value(&op, old);
    int rc = value != NULL ? put(pamh, op.name, value) : -1;
    free(value);
    return rc;
}

int es_shim_putenv(pam_handle_t *pamh, const char *text, const char *environment)
{
    char *copy = strdup(text), *save = NULL;
    int rc = 0;

    if (copy == NULL)
        return -1;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        if (strncmp(l, "env ", 4) == 0 && apply(pamh, l + 4) != 0)
            rc = -1;
    free(copy);
    if (rc == 0)
        rc = put(pamh, "CHOS", environment);
    return rc;
}
