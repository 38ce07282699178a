/* The one way the root C shims give up on a job: see es_fail.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "es_fail.h"
#include "es_run.h"

void es_vfail(int code, const char *ident, const char *context, const char *fmt, va_list ap)
{
    char msg[2048];

    vsnprintf(msg, sizeof msg, fmt, ap);
    const char *text = strncmp(msg, ES_PREFIX, strlen(ES_PREFIX)) == 0 ? msg + strlen(ES_PREFIX) : msg;
    fprintf(stderr, ES_PREFIX "%s\n", text);
    openlog(ident, LOG_PID, LOG_DAEMON);
    syslog(LOG_ERR, "%s exit=%d: %s", context, code, text);
    exit(code);
}
