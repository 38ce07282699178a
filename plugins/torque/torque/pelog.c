/* torque-pelog: Torque's prologue and epilogue (mom_priv/prologue, prologue.parallel, epilogue,
 * epilogue.parallel: root, from pbs_mom), without Python for a warm job.
 *
 *   torque-pelog prologue PYTHON-PROLOGUE... -- MOM-ARGS...
 *   torque-pelog epilogue PYTHON-EPILOGUE... -- MOM-ARGS...
 *   torque-pelog submit-filter PYTHON-FILTER... -- QSUB-ARGS...   (torque.cfg SUBMITFILTER, as the
 *                                                                   user: qsubfilter.c)
 *
 * The rendered mom_priv scripts run this program with the Python shim's command line
 * (envsched_torque.py) after the mode; pbs_mom's arguments follow the "--". Whatever this program
 * does not read exactly as envsched_torque.py does goes to it (an exec of that command line), so
 * every refusal keeps its one reason. C decides nothing here.
 *
 * prologue (pbs_mom: jobid user group jobname resource_list queue account [script])
 *   1. the job id (es_valid_jobid) and the owner through NSS; unknown: exit 0 (the starter
 *      refuses the job: it has no record)
 *   2. the starter's configuration beside us (torque-starter.conf: policy, run_dir, binds)
 *   3. the job's record, run_dir/.jobs/torque-<jobid> (../../common/es_jobrec.c), from pbs_mom's
 *      arguments: the starter's only source of the job's queue and account
 *   4. the submit filter's stamps in the script's first 50 lines (`#ENVSCHED chos=`,
 *      `#ENVSCHED pin=`); none: exit 0 (the starter decides, with the job's CHOS)
 *   5. the job's pin, key torque-<jobid> (../../common/es_prepare.c): from the decision cache,
 *      or by the resolver; the inputs are the starter's (uid, chos, queue, account) followed by
 *      the pinned version and the configuration, which the starter accepts after a tab (tpin.c).
 *      A refused request or a tree broken on this node: the line on stderr (the job's error
 *      file), exit 1 (Torque aborts the job)
 *
 * epilogue (jobid ...): every pin of the job (torque-<jobid>, torque-<jobid>.*) released in C
 * (../../common/es_release.c), the record removed; a pin that needs the resolver (node hooks,
 * isolation namespaces, image mounts) or a failure goes to the Python epilogue. Exit 0.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "torque_starter.h"
#include "../../common/es_jobrec.h"
#include "../../common/es_release.h"

#define PIN_SELECTOR "@sha256:"
#define HEAD_MAX 65536
#define HEAD_LINES 50

static char **python_argv;          /* the Python shim's command line, then "--" and pbs_mom's arguments */

static int to_python(const char *why)
{
    char err[1024];

    syslog(LOG_INFO, "to the Python shim: %s", why);
    es_exec_trusted(python_argv, err, sizeof err);
    syslog(LOG_ERR, "%s (%s)", err, why);
    return 0;
}

/* a stamp's value, as envsched_torque.py's read_stamps gives it (str.strip()), into out: 1; 0 when
 * this reader cannot be sure it reads what Python would (a byte outside printable ASCII in it) */
static int stamp_value(const char *line, size_t len, char *out, size_t cap)
{
    size_t a = 0, b = len;
    while (a < b && strchr(" \t\r\v\f", line[a]))
        a++;
    while (b > a && strchr(" \t\r\v\f", line[b - 1]))
        b--;
    if (b - a >= cap)
        return 0;
    for (size_t i = a; i < b; i++)
        if ((unsigned char)line[i] < 0x21 || (unsigned char)line[i] >= 0x7f)
            return 0;
    memcpy(out, line + a, b - a);
    out[b - a] = '\0';
    return 1;
}

/* 1: read (chos[0] == '\0': no stamp), 0: left to Python */
static int read_stamps(const char *path, char *chos, char *pin, size_t cap)
{
    static char head[HEAD_MAX + 1];
    int got_chos = 0, got_pin = 0;

    chos[0] = pin[0] = '\0';
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return 1;                               /* Python: no stamp */
    size_t len = 0;
    ssize_t n;
    while (len < HEAD_MAX && (n = read(fd, head + len, HEAD_MAX - len)) > 0)
        len += (size_t)n;
    close(fd);
    head[len] = '\0';
    const char *line = head;
    for (int i = 0; i < HEAD_LINES && line <= head + len; i++) {
        const char *nl = memchr(line, '\n', (size_t)(head + len - line));
        size_t ll = nl ? (size_t)(nl - line) : (size_t)(head + len - line);
        if (!got_chos && ll >= strlen(STAMP) && strncmp(line, STAMP, strlen(STAMP)) == 0) {
            if (!stamp_value(line + strlen(STAMP), ll - strlen(STAMP), chos, cap))
                return 0;
            got_chos = 1;
        } else if (!got_pin && ll >= strlen(PIN_STAMP) && strncmp(line, PIN_STAMP, strlen(PIN_STAMP)) == 0) {
            if (!stamp_value(line + strlen(PIN_STAMP), ll - strlen(PIN_STAMP), pin, cap))
                return 0;
            got_pin = 1;
        }
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    return 1;
}

/* envsched_torque.py's carried(): the pinned stamp when it is the request with a version added
 * (NAME -> NAME@sha256:<hex>), else the request (also the submit filter's, qsubfilter.c) */
const char *es_torque_carried(const char *request, const char *pinned)
{
    size_t rl = strlen(request), sl = strlen(PIN_SELECTOR);
    if (!request[0] || !pinned[0] || strchr(request, '@') || strncmp(pinned, request, rl) != 0 ||
        strncmp(pinned + rl, PIN_SELECTOR, sl) != 0)
        return request;
    const char *digest = pinned + rl + sl;
    if (!digest[0] || strspn(digest, "0123456789abcdef") != strlen(digest))
        return request;
    return pinned;
}

static int prologue(char **mom, int nmom)
{
    struct es_conf c;
    struct es_prepare p;
    char err[2048], key[96], fallback[112], chos[256], pin[512], inputs[2 * ES_TORQUE_INPUTS_MAX], config[17];
    char script[PATH_MAX], shim[ES_SHIM_MAX];
    int by_cache;

    /* 1 */
    if (nmom < 6 || !es_valid_jobid(mom[0]))
        return 0;
    const char *jobid = mom[0], *user = mom[1], *queue = mom[5], *account = nmom > 6 ? mom[6] : "";
    struct passwd *pw = getpwnam(user);
    if (pw == NULL)
        return 0;
    /* 2 */
    if (es_conf_load(&c, ES_TORQUE_CONF, err, sizeof err) != 0)
        return to_python(err);
    /* 3 */
    snprintf(key, sizeof key, "%s%s", ES_TORQUE_KEY_PREFIX, jobid);
    if (es_jobrec_write_key(c.run_dir, key, pw->pw_uid, user, queue, account, err, sizeof err) != 0)
        return to_python(err);
    /* 4 */
    if (nmom > 7)
        snprintf(script, sizeof script, "%s", mom[7]);
    else if (getcwd(script, sizeof script - 80) != NULL)
        snprintf(script + strlen(script), sizeof script - strlen(script), "/jobs/%s.SC", jobid);
    else
        return to_python("no working directory");
    if (!read_stamps(script, chos, pin, sizeof chos))
        return to_python("a stamp this reader leaves to Python");
    if (chos[0] == '\0')
        return 0;
    const char *request = es_torque_carried(chos, pin);
    /* 5 */
    es_conf_prepare(&c, &p);
    es_config_id(c.policy, p.binds, p.nbinds, c.host_tools, config);
    int w = snprintf(inputs, sizeof inputs, "uid=%u\tchos=%s\tqueue=%s\taccount=%s\tpin=%s\tconfig=%s",
                     (unsigned)pw->pw_uid, chos, queue, account, request == chos ? "" : request, config);
    if (w < 0 || (size_t)w >= sizeof inputs || strpbrk(queue, "\t\r\n") || strpbrk(account, "\t\r\n"))
        return to_python("the job's queue or account does not fit one inputs line");
    snprintf(fallback, sizeof fallback, "%s.v", key);
    p.scheduler = "torque";
    p.key = key;
    p.fallback_key = fallback;
    p.job = jobid;
    p.uid = pw->pw_uid;
    p.owner = getppid();            /* the pbs_mom child that runs us, then execs the job */
    p.partition = queue;
    p.account = account;
    p.chos = request;
    p.inputs = inputs;
    int rc = es_prepare_pin(&p, shim, sizeof shim, &by_cache, err, sizeof err);
    if (rc == ENVSCHED_EXIT_ENV_BROKEN || rc == ENVSCHED_EXIT_REFUSED) {
        fprintf(stderr, "%s\n", err);   /* the job's error file */
        return 1;                       /* Torque aborts the job */
    }
    if (rc != 0)
        syslog(LOG_INFO, "job %s: not prepared (exit %d): %s", jobid, rc, err);
    return 0;
}

static int epilogue(char **mom, int nmom)
{
    struct es_conf c;
    char err[2048], key[96];

    if (nmom < 1 || !es_valid_jobid(mom[0]))
        return 0;
    if (es_conf_load(&c, ES_TORQUE_CONF, err, sizeof err) != 0)
        return to_python(err);
    snprintf(key, sizeof key, "%s%s", ES_TORQUE_KEY_PREFIX, mom[0]);
    /* the job's pins: its key and KEY.* (the fallback key of another request) */
    DIR *d = opendir(c.run_dir);
    size_t kl = strlen(key);
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, key, kl) != 0 || (e->d_name[kl] != '\0' && e->d_name[kl] != '.'))
            continue;
        int rc = es_release_logged(c.run_dir, e->d_name, c.log_file, "", err, sizeof err);
        if (rc == ES_RELEASE_RESOLVER || rc == ES_RELEASE_FAILED) {
            closedir(d);
            return to_python(rc == ES_RELEASE_FAILED ? err : "a pin the resolver releases");
        }
    }
    if (d != NULL)
        closedir(d);
    if (es_jobrec_remove_key(c.run_dir, key, err, sizeof err) != 0)
        return to_python(err);
    return 0;
}

int main(int argc, char **argv)
{
    openlog("envsched-torque-pelog", LOG_PID, LOG_DAEMON);
    if (argc >= 2 && strcmp(argv[1], "submit-filter") == 0)
        return es_torque_submit_filter(argv + 2, argc - 2);        /* as the user, in qsub */
    if (argc < 2 || (strcmp(argv[1], "prologue") != 0 && strcmp(argv[1], "epilogue") != 0)) {
        fprintf(stderr, ES_PREFIX "usage: torque-pelog prologue|epilogue PYTHON-SHIM... -- MOM-ARGS... | "
                "submit-filter PYTHON-FILTER... -- QSUB-ARGS...\n");
        return 0;
    }
    int sep = 2;
    while (sep < argc && strcmp(argv[sep], "--") != 0)
        sep++;
    python_argv = argv + 2;             /* its own "--" and pbs_mom's arguments follow it */
    if (getuid() != 0 || geteuid() != 0)
        return to_python("not root");
    char **mom = sep < argc ? argv + sep + 1 : argv + argc;
    int nmom = sep < argc ? argc - sep - 1 : 0;
    return strcmp(argv[1], "prologue") == 0 ? prologue(mom, nmom) : epilogue(mom, nmom);
}
