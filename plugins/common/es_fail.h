/* How a root C shim gives up on a job: see es_fail.c. */
#ifndef ES_FAIL_H
#define ES_FAIL_H

#include <stdarg.h>

/* "envsched: MESSAGE" on stderr (the job's error file: what the user sees), the same message
 * after CONTEXT (job, user, key: what the admin needs) in syslog under IDENT, then exit(CODE).
 * A message that already starts with "envsched: " (a resolver line) is not prefixed twice. */
void es_vfail(int code, const char *ident, const char *context, const char *fmt, va_list ap)
    __attribute__((noreturn, format(printf, 4, 0)));

#endif
