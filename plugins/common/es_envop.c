/* The shim protocol's environment operations: see es_envop.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_envop.h"

int es_envop_parse(char *line, struct es_envop *op)
{
    char *save = NULL;

    op->action = strtok_r(line, " ", &save);
    op->name = strtok_r(NULL, " ", &save);
    op->value = strtok_r(NULL, "", &save);
    if (op->value == NULL)
        op->value = "";
    if (op->action == NULL || op->name == NULL)
        return -1;
    return strcmp(op->action, "set") == 0 || strcmp(op->action, "prepend") == 0 ||
           strcmp(op->action, "append") == 0 || strcmp(op->action, "unset") == 0 ? 0 : -1;
}

char *es_envop_value(const struct es_envop *op, const char *old)
{
    if (strcmp(op->action, "set") == 0 || old == NULL || old[0] == '\0')
        return strdup(op->value);
    size_t len = strlen(old) + strlen(op->value) + 2;
    char *joined = malloc(len);
    if (joined == NULL)
        return NULL;
    if (strcmp(op->action, "prepend") == 0)
        snprintf(joined, len, "%s:%s", op->value, old);
    else
        snprintf(joined, len, "%s:%s", old, op->value);
    return joined;
}
