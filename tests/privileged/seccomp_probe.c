/* Seccomp probe (compiled static by the tests, as crun's tests do): calls each syscall the default
 * profile must refuse, or allow, directly through syscall(2) and prints "name=ERRNO" (0: it worked).
 * Arguments are chosen so that, where the call is allowed, it does nothing lasting to the host. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *name, long ret) { printf("%s=%d\n", name, ret < 0 ? errno : 0); }

static void report_clone(const char *name, long ret) {
    if (ret == 0) _exit(0); /* the child of an allowed clone */
    if (ret > 0) waitpid((pid_t)ret, NULL, __WALL);
    report(name, ret);
}

struct clone_args_v0 { unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls; };

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    report("unshare", syscall(SYS_unshare, CLONE_NEWNS));
    report("mount", syscall(SYS_mount, "none", "/nonexistent-ocibox-probe", "tmpfs", 0UL, NULL));
    report("umount2", syscall(SYS_umount2, "/nonexistent-ocibox-probe", 0));
    report("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0));
    report("bpf", syscall(SYS_bpf, 0xffff, NULL, 0)); /* an unknown command */
    report("kexec_load", syscall(SYS_kexec_load, 0UL, 0UL, NULL, 0xdead0000UL)); /* invalid flags */
    report("open_by_handle_at", syscall(SYS_open_by_handle_at, -1, NULL, 0));
    report("setns", syscall(SYS_setns, -1, 0));
    report("personality_bad", syscall(SYS_personality, 0x0040000UL)); /* ADDR_NO_RANDOMIZE */
    report("personality_query", syscall(SYS_personality, 0xffffffffUL));
    report("socket_vsock", syscall(SYS_socket, 40 /* AF_VSOCK */, SOCK_STREAM, 0));
    report_clone("clone_newuser", syscall(SYS_clone, (unsigned long)(CLONE_NEWUSER | SIGCHLD), 0UL, NULL, NULL, 0UL));
    report_clone("clone_plain", syscall(SYS_clone, (unsigned long)SIGCHLD, 0UL, NULL, NULL, 0UL));
    struct clone_args_v0 ca;
    memset(&ca, 0, sizeof ca);
    ca.exit_signal = SIGCHLD;
    report_clone("clone3", syscall(435 /* clone3 */, &ca, sizeof ca));
#ifdef __x86_64__
    /* the i386 syscall table, reachable from a 64-bit process through int 0x80: unshare is 310 there */
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(310L), "b"((long)CLONE_NEWNS) : "memory");
    if (r < 0) { errno = (int)-r; r = -1; }
    report("i386_unshare", r);
#endif
    return 0;
}
