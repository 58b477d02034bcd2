#include "ct_file.h"

#include "ct_codec.h"
#include "ct_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

CT_RESULT ct_file_read(const char *path, size_t max, uint8_t **out, size_t *len, ct_err *err) {
  return ct_file_read_at(AT_FDCWD, path, max, out, len, err);
}

static CT_RESULT ct_file__read_fd(int fd, const char *path, size_t max, uint8_t **out, size_t *len, ct_err *err);

CT_RESULT ct_file_read_at(int dirfd, const char *path, size_t max, uint8_t **out, size_t *len, ct_err *err) {
  int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ct_fail(err, errno == ENOENT ? CT_ENOTFOUND : CT_EIO, "cannot open %s: %s", path,
                             strerror(errno));
  return ct_file__read_fd(fd, path, max, out, len, err);
}

CT_RESULT ct_file_read_beneath(int dirfd, const char *name, size_t max, uint8_t **out, size_t *len, ct_err *err) {
  struct open_how how = {.flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC,
                         .resolve = RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS};
  int fd = (int)syscall(SYS_openat2, dirfd, name, &how, sizeof how);
  /* no openat2 (kernel before 5.6, or a seccomp filter): follow nothing rather than anything */
  if (fd < 0 && (errno == ENOSYS || errno == EPERM)) fd = openat(dirfd, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT) return ct_fail(err, CT_ENOTFOUND, "cannot open %s: %s", name, strerror(e));
    return ct_fail(err, CT_EIO, "cannot open %s: %s", name,
                   e == EXDEV ? "a symbolic link that leads out of its directory" : e == ELOOP ? "a symbolic link"
                                                                                             : strerror(e));
  }
  return ct_file__read_fd(fd, name, max, out, len, err);
}

/* Reads the open file fd (closed on return) whole. */
static CT_RESULT ct_file__read_fd(int fd, const char *path, size_t max, uint8_t **out, size_t *len, ct_err *err) {
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return ct_fail(err, CT_EIO, "%s is not a regular file", path);
  }
  if ((uint64_t)sb.st_size > max) {
    close(fd);
    return ct_fail(err, CT_ELIMIT, "%s is %lld bytes, over the limit of %zu", path,
                   (long long)sb.st_size, max);
  }
  size_t size = (size_t)sb.st_size;
  uint8_t *buf = malloc(size + 1);
  if (!buf) {
    close(fd);
    return ct_fail(err, CT_ENOMEM, "out of memory reading %s", path);
  }
  size_t got = 0;
  while (got < size) {
    ssize_t n = read(fd, buf + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = errno;
      free(buf);
      close(fd);
      return ct_fail(err, CT_EIO, "reading %s: %s", path, n == 0 ? "file shrank" : strerror(e));
    }
    got += (size_t)n;
  }
  close(fd);
  buf[size] = 0;
  *out = buf;
  *len = size;
  return CT_OK;
}

CT_RESULT ct_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode,
                               ct_err *err) {
  return ct_file_write_atomic_at(AT_FDCWD, path, data, len, mode, err);
}

/* mkostemp has no *at form: try random names with O_EXCL until one is free. */
static int ct_file__mktemp_at(int dirfd, const char *path, char *tmp, size_t cap) {
  for (int attempt = 0; attempt < 64; attempt++) {
    unsigned char r[6];
    if (ct_random(r, sizeof r, NULL) != CT_OK) return -1;
    char suffix[13];
    ct_hex_into(r, sizeof r, suffix);
    snprintf(tmp, cap, "%s.tmp%s", path, suffix);
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  return -1;
}

CT_RESULT ct_file_write_atomic_at(int dirfd, const char *path, const void *data, size_t len, unsigned mode,
                                  ct_err *err) {
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 24);
  if (!tmp) return ct_fail(err, CT_ENOMEM, "out of memory");
  int fd = ct_file__mktemp_at(dirfd, path, tmp, plen + 24);
  if (fd < 0) {
    ct_status st = ct_fail(err, CT_EIO, "cannot create a temporary file beside %s: %s", path,
                           strerror(errno));
    free(tmp);
    return st;
  }
  ct_status st = CT_OK;
  const uint8_t *p = data;
  size_t done = 0;
  while (done < len) {
    ssize_t n = write(fd, p + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      st = ct_fail(err, CT_EIO, "writing %s: %s", path, strerror(errno));
      break;
    }
    done += (size_t)n;
  }
  if (st == CT_OK && fchmod(fd, (mode_t)mode) != 0)
    st = ct_fail(err, CT_EIO, "chmod %s: %s", path, strerror(errno));
  if (st == CT_OK && fsync(fd) != 0) st = ct_fail(err, CT_EIO, "fsync %s: %s", path, strerror(errno));
  close(fd);
  if (st == CT_OK && renameat(dirfd, tmp, dirfd, path) != 0)
    st = ct_fail(err, CT_EIO, "rename to %s: %s", path, strerror(errno));
  if (st != CT_OK) unlinkat(dirfd, tmp, 0);
  free(tmp);
  return st;
}
