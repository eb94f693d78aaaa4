/*
 * faultfs: an LD_PRELOAD shim that makes file system calls of a real process fail, for
 * isobar's fault-injection tests. It sits between the isobar binary (its own code and
 * RocksDB's) and libc, so the engine meets the errors a failing or full disk gives.
 *
 * The file named by FAULTFS_CONTROL says what to break; it is re-read whenever it changes,
 * so a test turns faults on and off while the server runs. One line:
 *
 *     <ERRNO> <op>[,<op>...] <path prefix> [<times>]
 *
 * ERRNO is EIO or ENOSPC; ops are write (write, pwrite, writev, pwritev), sync (fsync,
 * fdatasync, sync_file_range), rename, create (open/openat with O_CREAT), truncate
 * (ftruncate, fallocate); only calls on files under the prefix fail; `times` (default
 * unlimited) fails only that many calls. Or, to make a disk look nearly full:
 *
 *     FREE <bytes> <path prefix>
 *
 * statvfs of paths under the prefix reports <bytes> available.
 * An empty or missing file injects nothing.
 * FAULTFS_LOG, when set, names a file each injected failure is appended to.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum { OP_WRITE = 1, OP_SYNC = 2, OP_RENAME = 4, OP_CREATE = 8, OP_TRUNCATE = 16 };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct timespec loaded_mtime;
static off_t loaded_size = -1;
static int fault_errno;
static int fault_ops;
static char fault_prefix[4096];
static long fault_times_left = -1; /* -1: unlimited */
static long long fault_free_bytes = -1; /* -1: report the real free space */

#define REAL(ret, name, ...)                                                                   \
    static ret (*real_##name)(__VA_ARGS__);                                                     \
    if (!real_##name) real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name)

static void reload(void) {
    const char *control = getenv("FAULTFS_CONTROL");
    struct stat st;
    if (!control || stat(control, &st) != 0) {
        fault_ops = 0;
        loaded_size = -1;
        return;
    }
    if (st.st_size == loaded_size && st.st_mtim.tv_sec == loaded_mtime.tv_sec && st.st_mtim.tv_nsec == loaded_mtime.tv_nsec) {
        return;
    }
    loaded_size = st.st_size;
    loaded_mtime = st.st_mtim;
    fault_ops = 0;
    fault_times_left = -1;
    fault_free_bytes = -1;
    FILE *f = fopen(control, "r");
    if (!f) return;
    char err[32] = {0}, ops[256] = {0};
    long times = -1;
    int n = fscanf(f, "%31s %255s %4095s %ld", err, ops, fault_prefix, &times);
    fclose(f);
    if (n < 3) return;
    if (strcmp(err, "FREE") == 0) {
        fault_free_bytes = atoll(ops);
        return;
    }
    fault_errno = strcmp(err, "ENOSPC") == 0 ? ENOSPC : EIO;
    for (char *op = strtok(ops, ","); op; op = strtok(NULL, ",")) {
        if (!strcmp(op, "write")) fault_ops |= OP_WRITE;
        else if (!strcmp(op, "sync")) fault_ops |= OP_SYNC;
        else if (!strcmp(op, "rename")) fault_ops |= OP_RENAME;
        else if (!strcmp(op, "create")) fault_ops |= OP_CREATE;
        else if (!strcmp(op, "truncate")) fault_ops |= OP_TRUNCATE;
    }
    fault_times_left = n == 4 && times > 0 ? times : -1;
}

static void log_fault(const char *op, const char *path) {
    const char *log = getenv("FAULTFS_LOG");
    if (!log) return;
    REAL(int, open, const char *, int, ...);
    int fd = real_open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return;
    char line[4352];
    int len = snprintf(line, sizeof line, "%s %s %s\n", fault_errno == ENOSPC ? "ENOSPC" : "EIO", op, path);
    REAL(ssize_t, write, int, const void *, size_t);
    if (len > 0) real_write(fd, line, (size_t)len);
    close(fd);
}

/* Whether a call of kind `op` on `path` fails now; sets errno when it does. */
static int inject(int op, const char *name, const char *path) {
    if (!path) return 0;
    pthread_mutex_lock(&lock);
    reload();
    int hit = (fault_ops & op) && strncmp(path, fault_prefix, strlen(fault_prefix)) == 0 && fault_times_left != 0;
    if (hit) {
        if (fault_times_left > 0) fault_times_left--;
        log_fault(name, path);
    }
    int e = fault_errno;
    pthread_mutex_unlock(&lock);
    if (hit) errno = e;
    return hit;
}

static int inject_fd(int op, const char *name, int fd) {
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = 0;
    return inject(op, name, path);
}

ssize_t write(int fd, const void *buf, size_t count) {
    REAL(ssize_t, write, int, const void *, size_t);
    if (fd > 2 && inject_fd(OP_WRITE, "write", fd)) return -1;
    return real_write(fd, buf, count);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
    if (inject_fd(OP_WRITE, "pwrite", fd)) return -1;
    return real_pwrite(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    REAL(ssize_t, pwrite64, int, const void *, size_t, off_t);
    if (inject_fd(OP_WRITE, "pwrite64", fd)) return -1;
    return real_pwrite64(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    REAL(ssize_t, writev, int, const struct iovec *, int);
    if (fd > 2 && inject_fd(OP_WRITE, "writev", fd)) return -1;
    return real_writev(fd, iov, iovcnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
    REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t);
    if (inject_fd(OP_WRITE, "pwritev", fd)) return -1;
    return real_pwritev(fd, iov, iovcnt, offset);
}

int fsync(int fd) {
    REAL(int, fsync, int);
    if (inject_fd(OP_SYNC, "fsync", fd)) return -1;
    return real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(int, fdatasync, int);
    if (inject_fd(OP_SYNC, "fdatasync", fd)) return -1;
    return real_fdatasync(fd);
}

int sync_file_range(int fd, off_t offset, off_t nbytes, unsigned int flags) {
    REAL(int, sync_file_range, int, off_t, off_t, unsigned int);
    if (inject_fd(OP_SYNC, "sync_file_range", fd)) return -1;
    return real_sync_file_range(fd, offset, nbytes, flags);
}

int ftruncate(int fd, off_t length) {
    REAL(int, ftruncate, int, off_t);
    if (inject_fd(OP_TRUNCATE, "ftruncate", fd)) return -1;
    return real_ftruncate(fd, length);
}

int fallocate(int fd, int mode, off_t offset, off_t len) {
    REAL(int, fallocate, int, int, off_t, off_t);
    if (inject_fd(OP_TRUNCATE, "fallocate", fd)) return -1;
    return real_fallocate(fd, mode, offset, len);
}

int rename(const char *from, const char *to) {
    REAL(int, rename, const char *, const char *);
    if (inject(OP_RENAME, "rename", to)) return -1;
    return real_rename(from, to);
}

int renameat(int fromfd, const char *from, int tofd, const char *to) {
    REAL(int, renameat, int, const char *, int, const char *);
    if (to && to[0] == '/' && inject(OP_RENAME, "renameat", to)) return -1;
    return real_renameat(fromfd, from, tofd, to);
}

/*
 * open, open64, openat and openat64: only an open that creates a file under an absolute path
 * can fail. AT_DIR adds the directory descriptor of the *at variants to the parameters and
 * ARG_DIR to the call.
 */
#define NO_DIR
#define AT_DIR int dirfd,
#define ARG_DIR dirfd,
#define OPEN(name, dir_param, dir_arg)                                                           \
    int name(dir_param const char *path, int flags, ...) {                                       \
        REAL(int, name, dir_param const char *, int, ...);                                       \
        mode_t mode = 0;                                                                          \
        if (flags & O_CREAT) {                                                                    \
            va_list ap;                                                                           \
            va_start(ap, flags);                                                                  \
            mode = (mode_t)va_arg(ap, int);                                                       \
            va_end(ap);                                                                           \
            if (path && path[0] == '/' && inject(OP_CREATE, #name, path)) return -1;             \
        }                                                                                         \
        return real_##name(dir_arg path, flags, mode);                                           \
    }

OPEN(open, NO_DIR, NO_DIR)
OPEN(open64, NO_DIR, NO_DIR)
OPEN(openat, AT_DIR, ARG_DIR)
OPEN(openat64, AT_DIR, ARG_DIR)

/* The free space statvfs reports for `path`: the real one unless a FREE line covers it. */
static void fake_free(const char *path, struct statvfs *buf) {
    if (!path) return;
    pthread_mutex_lock(&lock);
    reload();
    if (fault_free_bytes >= 0 && strncmp(path, fault_prefix, strlen(fault_prefix)) == 0 && buf->f_frsize > 0) {
        buf->f_bavail = (fsblkcnt_t)(fault_free_bytes / (long long)buf->f_frsize);
        buf->f_bfree = buf->f_bavail;
    }
    pthread_mutex_unlock(&lock);
}

int statvfs(const char *path, struct statvfs *buf) {
    REAL(int, statvfs, const char *, struct statvfs *);
    int r = real_statvfs(path, buf);
    if (r == 0) fake_free(path, buf);
    return r;
}

int statvfs64(const char *path, struct statvfs64 *buf) {
    REAL(int, statvfs64, const char *, struct statvfs64 *);
    int r = real_statvfs64(path, buf);
    /* The same layout as struct statvfs on 64-bit Linux. */
    if (r == 0) fake_free(path, (struct statvfs *)buf);
    return r;
}
