/* ocibox.linux._kernel: the raw system calls that ocibox.linux.syscalls and ocibox.linux.seccomp need and
 * Python 3.11's os module lacks, as a small C extension. ctypes did this job; its import alone is ~2.5 ms
 * of every `ocibox run` here (libffi, ctypes' own classes), and each ctypes call converts its arguments
 * in Python. Same functions, same arguments, through ctypes: ocibox/linux/_ctypes_kernel.py, used where
 * this is not built (see ocibox.linux.syscalls).
 *
 * Every function returns the call's result, or -errno when it failed: the Python side turns that into
 * an OSError naming what failed. Strings are str, encoded as UTF-8 (as the ctypes side encodes them).
 *
 * Built by `python -m ocibox.linux` (scripts/install-deps runs it), with OCIBOX_KERNEL_STAMP set to the
 * source's "mtime_ns size": a build from another version of this file is not used. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <errno.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef OCIBOX_KERNEL_STAMP
#define OCIBOX_KERNEL_STAMP ""
#endif
/* the same number on every architecture since Linux 5.6's common table */
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

static PyObject *result(long r) {
    return PyLong_FromLong(r < 0 ? -(long)errno : r);
}

static PyObject *k_mount(PyObject *self, PyObject *args) {
    const char *source, *target, *fstype, *data;
    unsigned long flags;
    if (!PyArg_ParseTuple(args, "zszkz", &source, &target, &fstype, &flags, &data))
        return NULL;
    return result(mount(source, target, fstype, flags, data));
}

static PyObject *k_umount2(PyObject *self, PyObject *args) {
    const char *target;
    int flags;
    if (!PyArg_ParseTuple(args, "si", &target, &flags))
        return NULL;
    return result(umount2(target, flags));
}

static PyObject *k_pivot_root(PyObject *self, PyObject *args) {
    const char *new_root, *put_old;
    if (!PyArg_ParseTuple(args, "ss", &new_root, &put_old))
        return NULL;
    return result(syscall(SYS_pivot_root, new_root, put_old));
}

/* sethostname(2) and setdomainname(2): a name and its length */
static PyObject *name_call(PyObject *args, int (*set)(const char *, size_t)) {
    const char *name;
    Py_ssize_t len;
    if (!PyArg_ParseTuple(args, "s#", &name, &len))
        return NULL;
    return result(set(name, (size_t)len));
}

static PyObject *k_sethostname(PyObject *self, PyObject *args) {
    return name_call(args, sethostname);
}

static PyObject *k_setdomainname(PyObject *self, PyObject *args) {
    return name_call(args, setdomainname);
}

static PyObject *k_prctl(PyObject *self, PyObject *args) {
    int option;
    unsigned long a2 = 0, a3 = 0, a4 = 0, a5 = 0;
    if (!PyArg_ParseTuple(args, "i|kkkk", &option, &a2, &a3, &a4, &a5))
        return NULL;
    return result(prctl(option, a2, a3, a4, a5));
}

static PyObject *k_child_subreaper(PyObject *self, PyObject *unused) {
    int value = 0;
    if (prctl(PR_GET_CHILD_SUBREAPER, (unsigned long)&value, 0, 0, 0) < 0)
        return PyLong_FromLong(-(long)errno);
    return PyLong_FromLong(value);
}

struct open_how_ {
    uint64_t flags, mode, resolve;
};

static PyObject *k_openat2(PyObject *self, PyObject *args) {
    int dirfd;
    const char *path;
    unsigned long long flags, mode, resolve;
    if (!PyArg_ParseTuple(args, "isKKK", &dirfd, &path, &flags, &mode, &resolve))
        return NULL;
    struct open_how_ how = {flags, mode, resolve};
    return result(syscall(SYS_openat2, dirfd, path, &how, sizeof how));
}

static PyObject *k_close_range(PyObject *self, PyObject *args) {
    unsigned int first, last, flags;
    if (!PyArg_ParseTuple(args, "III", &first, &last, &flags))
        return NULL;
    return result(syscall(SYS_close_range, first, last, flags));
}

static PyObject *k_capset(PyObject *self, PyObject *args) {
    unsigned long long eff, perm, inh;
    if (!PyArg_ParseTuple(args, "KKK", &eff, &perm, &inh))
        return NULL;
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    for (int i = 0; i < 2; i++) {
        data[i].effective = (uint32_t)(eff >> (32 * i));
        data[i].permitted = (uint32_t)(perm >> (32 * i));
        data[i].inheritable = (uint32_t)(inh >> (32 * i));
    }
    return result(syscall(SYS_capset, &hdr, data));
}

/* (0, effective, permitted, inheritable), or (-errno, 0, 0, 0) */
static PyObject *k_capget(PyObject *self, PyObject *unused) {
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &hdr, data) < 0)
        return Py_BuildValue("(iiii)", -errno, 0, 0, 0);
    return Py_BuildValue("(iKKK)", 0,
                         (unsigned long long)data[0].effective | (unsigned long long)data[1].effective << 32,
                         (unsigned long long)data[0].permitted | (unsigned long long)data[1].permitted << 32,
                         (unsigned long long)data[0].inheritable | (unsigned long long)data[1].inheritable << 32);
}

static PyObject *k_personality(PyObject *self, PyObject *args) {
    unsigned long persona;
    if (!PyArg_ParseTuple(args, "k", &persona))
        return NULL;
    return result(personality(persona));
}

static PyObject *k_unshare(PyObject *self, PyObject *args) {
    int flags;
    if (!PyArg_ParseTuple(args, "i", &flags))
        return NULL;
    return result(unshare(flags));
}

static PyObject *k_setns(PyObject *self, PyObject *args) {
    int fd, nstype;
    if (!PyArg_ParseTuple(args, "ii", &fd, &nstype))
        return NULL;
    return result(setns(fd, nstype));
}

static PyObject *k_socket(PyObject *self, PyObject *args) {
    int domain, type, protocol;
    if (!PyArg_ParseTuple(args, "iii", &domain, &type, &protocol))
        return NULL;
    return result(socket(domain, type, protocol));
}

/* prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, program): a classic-BPF program (struct sock_filter array) */
static PyObject *k_seccomp_filter(PyObject *self, PyObject *args) {
    Py_buffer prog;
    if (!PyArg_ParseTuple(args, "y*", &prog))
        return NULL;
    struct sock_fprog fprog = {(unsigned short)(prog.len / sizeof(struct sock_filter)), (struct sock_filter *)prog.buf};
    long r = prctl(PR_SET_SECCOMP, 2 /* SECCOMP_MODE_FILTER */, (unsigned long)&fprog, 0, 0);
    int err = errno;
    PyBuffer_Release(&prog);
    return PyLong_FromLong(r < 0 ? -(long)err : r);
}

/* libseccomp's version, (major, minor, micro), or None when libseccomp.so.2 cannot be loaded */
static PyObject *k_libseccomp_version(PyObject *self, PyObject *unused) {
    struct version { unsigned int major, minor, micro; };
    void *lib = dlopen("libseccomp.so.2", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        Py_RETURN_NONE;
    const struct version *(*fn)(void) = (const struct version *(*)(void))dlsym(lib, "seccomp_version");
    if (fn == NULL)
        Py_RETURN_NONE;
    const struct version *v = fn();
    return Py_BuildValue("(III)", v->major, v->minor, v->micro);
}

static PyMethodDef methods[] = {
    {"mount", k_mount, METH_VARARGS, "mount(source|None, target, fstype|None, flags, data|None)"},
    {"umount2", k_umount2, METH_VARARGS, "umount2(target, flags)"},
    {"pivot_root", k_pivot_root, METH_VARARGS, "pivot_root(new_root, put_old)"},
    {"sethostname", k_sethostname, METH_VARARGS, "sethostname(name)"},
    {"setdomainname", k_setdomainname, METH_VARARGS, "setdomainname(name)"},
    {"prctl", k_prctl, METH_VARARGS, "prctl(option, arg2=0, arg3=0, arg4=0, arg5=0)"},
    {"child_subreaper", k_child_subreaper, METH_NOARGS, "PR_GET_CHILD_SUBREAPER: 0 or 1"},
    {"openat2", k_openat2, METH_VARARGS, "openat2(dirfd, path, flags, mode, resolve) -> fd"},
    {"close_range", k_close_range, METH_VARARGS, "close_range(first, last, flags)"},
    {"capset", k_capset, METH_VARARGS, "capset(effective, permitted, inheritable)"},
    {"capget", k_capget, METH_NOARGS, "capget() -> (0 or -errno, effective, permitted, inheritable)"},
    {"personality", k_personality, METH_VARARGS, "personality(persona)"},
    {"unshare", k_unshare, METH_VARARGS, "unshare(flags)"},
    {"setns", k_setns, METH_VARARGS, "setns(fd, nstype)"},
    {"socket", k_socket, METH_VARARGS, "socket(domain, type, protocol) -> fd"},
    {"seccomp_filter", k_seccomp_filter, METH_VARARGS, "prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, program)"},
    {"libseccomp_version", k_libseccomp_version, METH_NOARGS, "(major, minor, micro) or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernel", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernel(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddStringConstant(m, "STAMP", OCIBOX_KERNEL_STAMP) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
