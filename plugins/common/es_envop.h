/* One "env ACTION NAME [VALUE]" line of the resolver's shim protocol (src/envsched/shim.py),
 * shared by every C shim; each applies the result to its own environment (setenv, spank_setenv,
 * pam_putenv). Same meaning as src/envsched/enter.py apply_env_ops. */
#ifndef ES_ENVOP_H
#define ES_ENVOP_H

struct es_envop {
    const char *action;     /* set, prepend, append, unset */
    const char *name;
    const char *value;      /* "" when the line has none */
};

/* Split the text after "env " in place; -1 if a part is missing or the action is unknown. */
int es_envop_parse(char *line, struct es_envop *op);
/* The variable's new value (malloc'd; NULL when out of memory) for set, prepend or append,
 * given its old one (NULL or "" when unset: then the value alone). Not for unset. */
char *es_envop_value(const struct es_envop *op, const char *old);

#endif
