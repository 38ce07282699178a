/* A stand-in for Grid Engine's sge_shepherd, for the forging tests only (tests/uge/test_uge_forged.py).
 *
 *   sge_shepherd JOBDIR ADMIN_UID UID GID PROGRAM [ARGS...]
 *
 * Run as root and installed under the name `sge_shepherd`, it does what the real shepherd does
 * before it starts a job's program, as far as the starter and the prolog can see: it works in
 * JOBDIR (the job's spool directory, with a `config` the test wrote), keeps real uid 0 with the
 * effective uid ADMIN_UID (the Grid Engine admin user, as measured: Uid 0 105 0 105), and runs
 * PROGRAM as UID:GID (the starter_method, as the job user; UID 0: a root@ prolog). Its exit status
 * is the program's (128+signal if it was killed). Only root can make such a parent: it lets the
 * tests feed the starter and the prolog any spool contents without a cluster.
 */
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: sge_shepherd JOBDIR ADMIN_UID UID GID PROGRAM [ARGS...]\n");
        return 2;
    }
    uid_t admin = (uid_t)atol(argv[2]), uid = (uid_t)atol(argv[3]);
    gid_t gid = (gid_t)atol(argv[4]);
    if (chdir(argv[1]) != 0) {
        perror(argv[1]);
        return 2;
    }
    if (setresuid(0, admin, 0) != 0) {
        perror("setresuid");
        return 2;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 2;
    }
    if (child == 0) {
        if (setresuid(0, 0, 0) != 0 || setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 ||
            setresuid(uid, uid, uid) != 0) {
            perror("dropping to the job user");
            _exit(2);
        }
        execv(argv[5], argv + 5);
        perror(argv[5]);
        _exit(127);
    }
    int status;
    while (waitpid(child, &status, 0) < 0)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
