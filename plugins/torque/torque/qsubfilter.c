/* torque-pelog submit-filter: Torque's submit filter (torque.cfg SUBMITFILTER, run by qsub as the
 * submitting user, qsub's arguments on the command line, the job script on stdin), without Python
 * for a warm submission.
 *
 *   torque-pelog submit-filter PYTHON-FILTER... -- QSUB-ARGS...
 *
 * PYTHON-FILTER is envsched_torque.py's command line (`/usr/bin/python3 -I envsched_torque.py
 * submit-filter --policy FILE ...`), as rendered by `site-config render --scheduler torque`
 * (section submitfilter). This program:
 *   1. copies the script from stdin into a memory file (the Python filter reads it from there
 *      when this program hands over to it: its stdin, rewound);
 *   2. finds CHOS as the job will see it, exactly as envsched_torque.py's requested_chos does
 *      (`#PBS -v` in the script before its first command, then qsub's -v/-V); a line or a value
 *      this reader cannot be sure to read as Python does (anything outside printable ASCII and tab
 *      in a directive line or value, a script that is not UTF-8, a locale other than UTF-8 or C)
 *      goes to Python;
 *   3. asks the submit-time cache (../../common/es_submit.c: ~/.cache/envsched/submit, the answer
 *      `envsched validate --identity-only --pin --submit-cache` gave this user for this CHOS and
 *      this policy, every input of it unchanged: the policy, the user and groups, ~/.chos when
 *      the job names nothing, the stamps and tree of the version it pinned);
 *   4. on a hit, what the Python filter does with the same answer: a refusal is its last
 *      "envsched: " line on stderr and exit 1; an acceptance prints the script with the stamps
 *      (`#ENVSCHED chos=VALUE`, and `#ENVSCHED pin=NAME@sha256:...` when the answer pinned the
 *      job's own request), as envsched_torque.py's stamped() writes them;
 *   5. anything else (no entry, a changed input, a doubt) execs the Python filter, which runs the
 *      resolver as before and keeps its answer for the next submission. If it cannot be run, the
 *      submission is refused with one line (fail closed).
 * The cache is the user's own: an entry the user edits changes only what the user is told at
 * submit (a stamp they could write themselves); the prologue and the starter decide on the node.
 * C decides nothing: the request goes through unchanged, the answer is the resolver's.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <langinfo.h>
#include <limits.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "torque_starter.h"
#include "../../common/es_submit.h"

#define VALUE_MAX 1024

static char **py_argv;
static int script_fd = -1;

/* Hand over to the Python filter with the script on its stdin; returns only when it cannot be run:
 * then the submission is refused (exit 1, one line). */
static int to_python(const char *why)
{
    char err[1024];

    syslog(LOG_DEBUG, "submit filter to Python: %s", why);
    if (script_fd >= 0 && (lseek(script_fd, 0, SEEK_SET) != 0 || dup2(script_fd, 0) != 0)) {
        fprintf(stderr, ES_PREFIX "the submit filter cannot hand the job script on: %s\n", strerror(errno));
        return 1;
    }
    es_exec_trusted(py_argv, err, sizeof err);
    fprintf(stderr, ES_PREFIX "the submit filter cannot run: %s\n", err);
    return 1;
}

/* ---- CHOS as envsched_torque.py's requested_chos finds it -------------------------------- */

struct chos {
    int set;                    /* 0: None */
    char value[VALUE_MAX];
};

/* every byte printable ASCII (space included), or a tab */
static int plain(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] < 0x20 && s[i] != '\t') || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

static int set_value(struct chos *c, const char *v, size_t n)
{
    if (n >= sizeof c->value || !plain(v, n) || memchr(v, '\t', n))
        return -1;
    memcpy(c->value, v, n);
    c->value[n] = '\0';
    c->set = 1;
    return 0;
}

/* v_assignments(value).get("CHOS", chos): items split at ',', a name stripped, the last CHOS wins;
 * a name without '=' takes the submitter's value. 0, or -1 (not sure to read it as Python). */
static int v_assignments(const char *value, size_t len, struct chos *c)
{
    if (!plain(value, len))
        return -1;
    const char *p = value, *end = value + len;
    while (p <= end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *item_end = comma ? comma : end;
        const char *eq = memchr(p, '=', (size_t)(item_end - p));
        const char *a = p, *b = eq ? eq : item_end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (b - a == 4 && memcmp(a, "CHOS", 4) == 0) {
            if (eq) {
                if (set_value(c, eq + 1, (size_t)(item_end - eq - 1)) != 0)
                    return -1;
            } else {
                const char *env = getenv("CHOS");
                if (set_value(c, env ? env : "", env ? strlen(env) : 0) != 0)
                    return -1;
            }
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return 0;
}

/* a `#PBS` line: line[4:].split(), and each "-v" but the last word takes the next word */
static int directive(const char *line, size_t len, struct chos *c)
{
    const char *w[512];
    size_t wl[512];
    int n = 0;
    for (size_t i = 4; i < len;) {
        while (i < len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        if (i >= len)
            break;
        size_t s = i;
        while (i < len && line[i] != ' ' && line[i] != '\t')
            i++;
        if (n == 512)
            return -1;
        w[n] = line + s;
        wl[n++] = i - s;
    }
    for (int i = 0; i + 1 < n; i++)
        if (wl[i] == 2 && memcmp(w[i], "-v", 2) == 0 && v_assignments(w[i + 1], wl[i + 1], c) != 0)
            return -1;
    return 0;
}

/* The script's directives, up to its first command (qsub stops there), then qsub's -v and -V.
 * 0, or -1 when a line or value is not certainly read as Python reads it. */
static int requested_chos(const char *script, size_t len, char **args, int nargs, struct chos *c)
{
    memset(c, 0, sizeof *c);
    for (size_t at = 0; at < len;) {
        const char *line = script + at, *nl = memchr(line, '\n', len - at);
        size_t ll = nl ? (size_t)(nl - line) : len - at;
        at += ll + 1;
        unsigned char first = ll ? (unsigned char)line[0] : 0;
        if (first > 0x20 && first < 0x7f && first != '#')
            break;                          /* a command: Python's strip() leaves it, no '#' */
        if (!plain(line, ll))
            return -1;                      /* splitlines()/strip() may read it otherwise */
        if (ll >= 4 && memcmp(line, "#PBS", 4) == 0) {
            if (directive(line, ll, c) != 0)
                return -1;
            continue;
        }
        if (first == '#')
            continue;
        size_t i = 0;
        while (i < ll && (line[i] == ' ' || line[i] == '\t'))
            i++;
        if (i < ll)
            break;                          /* blanks, then a command */
    }
    for (int i = 0; i < nargs; i++) {
        const char *a = args[i];
        if (strcmp(a, "-V") == 0) {
            const char *env = getenv("CHOS");
            if (env != NULL && set_value(c, env, strlen(env)) != 0)
                return -1;
        } else if (strcmp(a, "-v") == 0 && i + 1 < nargs) {
            if (v_assignments(args[i + 1], strlen(args[i + 1]), c) != 0)
                return -1;
        } else if (strncmp(a, "-v", 2) == 0 && a[2]) {
            if (v_assignments(a + 2, strlen(a + 2), c) != 0)
                return -1;
        }
    }
    return 0;
}

/* ---- the script as envsched_torque.py's stamped() writes it ------------------------------ */

static int put(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(1, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static int is_stamp(const char *line, size_t ll)
{
    return (ll >= strlen(STAMP) && memcmp(line, STAMP, strlen(STAMP)) == 0) ||
           (ll >= strlen(PIN_STAMP) && memcmp(line, PIN_STAMP, strlen(PIN_STAMP)) == 0);
}

/* The script's lines (split at "\n" alone), the user's own stamps left out, the stamps after a
 * "#!" line (given a "\n" of its own) or first. */
static int write_stamped(const char *script, size_t len, const char *chos, const char *pin)
{
    char stamps[2 * VALUE_MAX + 64];
    int n = snprintf(stamps, sizeof stamps, STAMP "%s\n", chos);
    if (pin[0])
        n += snprintf(stamps + n, sizeof stamps - (size_t)n, PIN_STAMP "%s\n", pin);
    size_t at = 0;
    int shebang = len >= 2 && memcmp(script, "#!", 2) == 0;
    if (shebang) {
        const char *nl = memchr(script, '\n', len);
        size_t ll = nl ? (size_t)(nl - script) + 1 : len;
        if (put(script, ll) != 0 || (!nl && put("\n", 1) != 0))
            return -1;
        at = ll;
    }
    if (put(stamps, (size_t)n) != 0)
        return -1;
    while (at < len) {
        const char *line = script + at, *nl = memchr(line, '\n', len - at);
        size_t ll = nl ? (size_t)(nl - line) + 1 : len - at;
        if (!is_stamp(line, ll) && put(line, ll) != 0)
            return -1;
        at += ll;
    }
    return 0;
}

/* ---- the whole filter --------------------------------------------------------------------- */

/* the script is UTF-8 (what Python decodes and writes back unchanged in a UTF-8 or C locale) */
static int utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char b = s[i];
        size_t k = b < 0x80 ? 0 : (b & 0xe0) == 0xc0 ? 1 : (b & 0xf0) == 0xe0 ? 2 : (b & 0xf8) == 0xf0 ? 3 : 9;
        if (b == 0 || k == 9 || (k == 1 && b < 0xc2) || (b == 0xf4 && i + 1 < n && s[i + 1] > 0x8f) || b > 0xf4 ||
            i + k >= n + (k ? 0 : 1))
            return 0;
        for (size_t j = 1; j <= k; j++)
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
        if (k == 2 && ((b == 0xe0 && s[i + 1] < 0xa0) || (b == 0xed && s[i + 1] > 0x9f)))
            return 0;                       /* overlong, surrogates */
        if (k == 3 && b == 0xf0 && s[i + 1] < 0x90)
            return 0;
        i += k + 1;
    }
    return 1;
}

/* stdin into a memory file (any size; the Python filter reads it from there on a miss) */
static int slurp(const char **script, size_t *len)
{
    char buf[65536];
    size_t total = 0;

    script_fd = memfd_create("envsched-job-script", MFD_CLOEXEC);
    if (script_fd < 0)
        return -1;
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(script_fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return -1;
            off += w;
        }
        total += (size_t)n;
    }
    *len = total;
    *script = "";
    if (total > 0) {
        void *m = mmap(NULL, total, PROT_READ, MAP_PRIVATE, script_fd, 0);
        if (m == MAP_FAILED)
            return -1;
        *script = m;
    }
    return 0;
}

int es_torque_submit_filter(char **argv, int argc)
{
    static struct es_user u;
    static struct es_run a;
    const char *policy = NULL, *script;
    size_t len;
    char why[512];

    py_argv = argv;
    /* the Python filter's own options (envsched_torque.py parse_args): --policy, up to its "--" */
    int sep = 0;
    while (sep < argc && strcmp(argv[sep], "--") != 0) {
        if (strcmp(argv[sep], "--policy") == 0 && sep + 1 < argc && strcmp(argv[sep + 1], "--") != 0)
            policy = argv[sep + 1];
        sep++;
    }
    /* 1 */
    if (slurp(&script, &len) != 0) {
        fprintf(stderr, ES_PREFIX "the submit filter cannot read the job script: %s\n", strerror(errno));
        return 1;
    }
    if (policy == NULL || sep >= argc || policy[0] != '/')
        return to_python("no --policy FILE or no \"--\" in the Python filter's command line");
    setlocale(LC_CTYPE, "");
    const char *codeset = nl_langinfo(CODESET);
    if (strcmp(codeset, "UTF-8") != 0 && strcmp(codeset, "ANSI_X3.4-1968") != 0)
        return to_python("a locale other than UTF-8 or C");
    if (!utf8((const unsigned char *)script, len))
        return to_python("the script is not UTF-8");
    /* 2 */
    struct chos c;
    if (requested_chos(script, len, argv + sep + 1, argc - sep - 1, &c) != 0)
        return to_python("a directive or value outside plain ASCII");
    /* 3 */
    char inputs[PATH_MAX + 2 * VALUE_MAX], path[PATH_MAX + 64], name[17];
    if (es_user_lookup(getuid(), &u) != 0 || u.uid != geteuid())
        return to_python("the user is not known here");
    if ((size_t)snprintf(inputs, sizeof inputs, "uid=%u\toption=\tchos=%s\tpolicy=%s", (unsigned)u.uid, c.value,
                         policy) >= sizeof inputs)
        return to_python("inputs too long");
    es_cache_name(inputs, name);
    if ((size_t)snprintf(path, sizeof path, "%s/" ES_SUBMIT_DIR "/%s", u.home, name) >= sizeof path)
        return to_python("home too long");
    struct es_submit_lookup l = {path, u.uid, inputs, &u, c.value[0] == '\0', 0};
    if (es_submit_cached(&l, &a, why, sizeof why) != ES_CACHE_HIT)
        return to_python(why);
    /* 4 */
    if (a.status != 0) {
        char line[1024];
        fprintf(stderr, "%s\n", es_user_line(&a, line, sizeof line));
        return 1;
    }
    char pinned[VALUE_MAX];
    if (es_submit_first_out(&a, pinned, sizeof pinned) != 0)
        return to_python("answer too long");
    for (const char *p = pinned; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return to_python("an answer Python would strip");
    const char *carry = es_torque_carried(c.value, pinned);
    if (write_stamped(script, len, c.value, carry != c.value ? carry : "") != 0)
        return 1;                       /* qsub reads a failing filter as a refusal */
    return 0;
}
