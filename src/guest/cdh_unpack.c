/*
 * cdh_unpack.c - layer unpacking with libarchive (secure-symlink and no-dot-dot flags) plus our
 * own checks, which refuse the whole layer on the first offending entry: every name is
 * normalised and must stay inside the tree, nothing is written through a symlink, hard links
 * point inside the tree, relative symlink targets do not climb out of it. Whiteouts (.wh.NAME,
 * .wh..wh..opq) are applied first, against the layers below, without following symlinks.
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cdh_image.h"
#include "ct_log.h"

#define CDH__RM_DEPTH_MAX 256

/* Normalises an entry name ("./a//b/" -> "a/b"); refuses absolute names and "..". An empty
 * result is the root itself. */
static CT_RESULT cdh__norm(const char *name, char *out, size_t cap, ct_err *err) {
  CT_ENSURE(name, err, CT_EINVAL, "layer: an entry has no name");
  CT_ENSURE(name[0] != '/', err, CT_EDENIED, "layer: entry \"%.200s\" has an absolute path", name);
  size_t o = 0;
  for (const char *p = name; *p;) {
    const char *e = strchr(p, '/');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n == 2 && p[0] == '.' && p[1] == '.')
      return ct_fail(err, CT_EDENIED, "layer: entry \"%.200s\" climbs out of the tree (..)", name);
    if (n && !(n == 1 && p[0] == '.')) {
      CT_ENSURE(o + n + 2 < cap, err, CT_ELIMIT, "layer: entry name longer than %zu bytes", cap);
      if (o) out[o++] = '/';
      memcpy(out + o, p, n);
      o += n;
    }
    if (!e) break;
    p = e + 1;
  }
  out[o] = 0;
  return CT_OK;
}

/* A relative symlink target must not climb above the tree's root from the link's directory. */
static int cdh__symlink_escapes(const char *norm, const char *target) {
  if (target[0] == '/') return 0; /* resolved inside the container's root at run time */
  int depth = 0;
  for (const char *c = norm; (c = strchr(c, '/')); c++) depth++;
  for (const char *p = target; *p;) {
    const char *e = strchr(p, '/');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n == 2 && p[0] == '.' && p[1] == '.') {
      if (--depth < 0) return 1;
    } else if (n && !(n == 1 && p[0] == '.')) {
      depth++;
    }
    if (!e) break;
    p = e + 1;
  }
  return 0;
}

/* Every existing ancestor of `norm` below the root must be a real directory. */
static CT_RESULT cdh__no_symlink_parents(const char *root, const char *norm, ct_err *err) {
  char p[PATH_MAX];
  int n = snprintf(p, sizeof p, "%s/%s", root, norm);
  CT_ENSURE(n > 0 && (size_t)n < sizeof p, err, CT_ELIMIT, "layer: path too long");
  size_t rl = strlen(root) + 1;
  for (char *s = p + rl; (s = strchr(s, '/')); s++) {
    *s = 0;
    struct stat st;
    int rc = lstat(p, &st);
    *s = '/';
    if (rc != 0) return CT_OK; /* missing: created as a directory by libarchive */
    CT_ENSURE(!S_ISLNK(st.st_mode), err, CT_EDENIED,
              "layer: entry \"%.200s\" would be written through the symlink \"%.*s\"", norm,
              (int)(s - p - (ptrdiff_t)rl), p + rl);
    CT_ENSURE(S_ISDIR(st.st_mode), err, CT_EDENIED,
              "layer: entry \"%.200s\" has a parent that is not a directory", norm);
  }
  return CT_OK;
}

/* --- whiteouts ---------------------------------------------------------------------------- */

static void cdh__rm_at(int dfd, const char *name, int depth);

static void cdh__clear_dir(int dfd, int depth) {
  DIR *d = fdopendir(dfd);
  if (!d) {
    close(dfd);
    return;
  }
  struct dirent *e;
  /* Collect names first: removing while reading a directory stream is unspecified. */
  char **names = NULL;
  size_t n = 0, cap = 0;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 32;
      char **nn = realloc(names, cap * sizeof *names);
      if (!nn) break;
      names = nn;
    }
    if (!(names[n] = strdup(e->d_name))) break;
    n++;
  }
  for (size_t i = 0; i < n; i++) {
    cdh__rm_at(dirfd(d), names[i], depth + 1);
    free(names[i]);
  }
  free(names);
  closedir(d);
}

static void cdh__rm_at(int dfd, const char *name, int depth) {
  if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT) return;
  if (depth >= CDH__RM_DEPTH_MAX) return;
  int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  cdh__clear_dir(fd, depth);
  unlinkat(dfd, name, AT_REMOVEDIR);
}

/* Opens the directory `rel` under root without following any symlink; -1 if it is missing. */
static int cdh__open_dir(const char *root, const char *rel) {
  int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  char buf[PATH_MAX];
  snprintf(buf, sizeof buf, "%s", rel);
  for (char *p = buf; fd >= 0 && *p;) {
    char *e = strchr(p, '/');
    if (e) *e = 0;
    int nfd = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(fd);
    fd = nfd;
    if (!e) break;
    p = e + 1;
  }
  return fd;
}

static void cdh__whiteout(const char *root, const char *norm) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", norm);
  char *slash = strrchr(dir, '/');
  const char *base = slash ? slash + 1 : dir;
  const char *target = base + 4;
  if (slash) *slash = 0;
  else dir[0] = 0;
  int fd = cdh__open_dir(root, dir);
  if (fd < 0) return;
  if (!strcmp(base, ".wh..wh..opq")) {
    cdh__clear_dir(fd, 0); /* takes fd */
    return;
  }
  if (*target) cdh__rm_at(fd, target, 0);
  close(fd);
}

/* --- extraction --------------------------------------------------------------------------- */

/* Where a layer is read from: memory, or a file (read from its start on every pass). */
typedef struct cdh__src {
  const uint8_t *blob;
  size_t len;
  int fd; /* >= 0: read the file instead */
} cdh__src;

static struct archive *cdh__reader(const cdh__src *src) {
  struct archive *a = archive_read_new();
  if (!a) return NULL;
  archive_read_support_filter_gzip(a);
  archive_read_support_filter_zstd(a);
  archive_read_support_format_tar(a);
  int rc = src->fd >= 0 ? (lseek(src->fd, 0, SEEK_SET) == 0 ? archive_read_open_fd(a, src->fd, 64 << 10)
                                                             : ARCHIVE_FATAL)
                        : archive_read_open_memory(a, src->blob, src->len);
  if (rc != ARCHIVE_OK) {
    archive_read_free(a);
    return NULL;
  }
  return a;
}

static int cdh__is_whiteout(const char *norm) {
  const char *b = strrchr(norm, '/');
  return !strncmp(b ? b + 1 : norm, ".wh.", 4);
}

static CT_RESULT cdh__whiteout_pass(const char *root, const cdh__src *src, ct_err *err) {
  struct archive *a = cdh__reader(src);
  CT_ENSURE(a, err, CT_EINVAL, "layer: not a tar archive (gzip, zstd or plain)");
  struct archive_entry *e;
  ct_status st = CT_OK;
  int r;
  char norm[PATH_MAX];
  while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
    CT_GUARD_GOTO(st, cdh__norm(archive_entry_pathname(e), norm, sizeof norm, err), out);
    if (norm[0] && cdh__is_whiteout(norm)) {
      CT_GUARD_GOTO(st, cdh__no_symlink_parents(root, norm, err), out);
      cdh__whiteout(root, norm);
    }
  }
  if (r != ARCHIVE_EOF)
    st = ct_fail(err, CT_EINVAL, "layer: unreadable archive: %.200s", archive_error_string(a));
out:
  archive_read_free(a);
  return st;
}

static CT_RESULT cdh__unpack(const char *root, const cdh__src *src, cdh_unpack_state *state, ct_err *err) {
  CT_GUARD(cdh__whiteout_pass(root, src, err));
  struct archive *a = cdh__reader(src);
  struct archive *w = archive_write_disk_new();
  ct_status st = CT_OK;
  CT_ENSURE_GOTO(st, a && w, out, err, CT_ENOMEM, "layer: cannot create the archive reader");
  int flags = ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
              ARCHIVE_EXTRACT_UNLINK | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME;
  if (geteuid() == 0) flags |= ARCHIVE_EXTRACT_OWNER;
  archive_write_disk_set_options(w, flags);
  struct archive_entry *e;
  int r;
  char norm[PATH_MAX], full[PATH_MAX], lnorm[PATH_MAX];
  while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
    CT_GUARD_GOTO(st, cdh__norm(archive_entry_pathname(e), norm, sizeof norm, err), out);
    if (!norm[0] || cdh__is_whiteout(norm)) continue;
    CT_ENSURE_GOTO(st, !state->cancel || !atomic_load(state->cancel), out, err, CT_EEXPIRED,
                   "layer: cancelled: the caller is no longer waiting");
    CT_ENSURE_GOTO(st, ++state->entries <= CDH_ENTRIES_MAX, out, err, CT_ELIMIT,
                   "layer: more than %u entries", CDH_ENTRIES_MAX);
    mode_t type = archive_entry_filetype(e);
    const char *hl = archive_entry_hardlink(e);
    if (!hl && (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFIFO || type == AE_IFSOCK)) {
      CT_LOG_WARN_("cdh", "layer: skipping special file %s", norm);
      continue;
    }
    CT_GUARD_GOTO(st, cdh__no_symlink_parents(root, norm, err), out);
    if (type == AE_IFLNK && !hl) {
      const char *t = archive_entry_symlink(e);
      CT_ENSURE_GOTO(st, t && *t, out, err, CT_EINVAL, "layer: symlink %.200s has no target", norm);
      CT_ENSURE_GOTO(st, !cdh__symlink_escapes(norm, t), out, err, CT_EDENIED,
                     "layer: symlink \"%.200s\" -> \"%.200s\" escapes the tree", norm, t);
    }
    if (hl) {
      CT_GUARD_GOTO(st, cdh__norm(hl, lnorm, sizeof lnorm, err), out);
      CT_ENSURE_GOTO(st, lnorm[0], out, err, CT_EDENIED, "layer: hard link %.200s to the root", norm);
      CT_GUARD_GOTO(st, cdh__no_symlink_parents(root, lnorm, err), out);
      struct stat ls;
      int ll = snprintf(full, sizeof full, "%s/%s", root, lnorm);
      CT_ENSURE_GOTO(st, ll > 0 && (size_t)ll < sizeof full, out, err, CT_ELIMIT, "layer: path too long");
      CT_ENSURE_GOTO(st, lstat(full, &ls) == 0 && !S_ISDIR(ls.st_mode), out, err, CT_EDENIED,
                     "layer: hard link \"%.200s\" -> \"%.200s\": no such file in the tree", norm, lnorm);
      archive_entry_set_hardlink(e, full);
    }
    int fl = snprintf(full, sizeof full, "%s/%s", root, norm);
    CT_ENSURE_GOTO(st, fl > 0 && (size_t)fl < sizeof full, out, err, CT_ELIMIT, "layer: path too long");
    archive_entry_set_pathname(e, full);
    /* Extended attributes and ACLs stay out (capabilities would be granted by the host). */
    archive_entry_xattr_clear(e);
    archive_entry_acl_clear(e);
    if (archive_write_header(w, e) != ARCHIVE_OK) {
      st = ct_fail(err, CT_EDENIED, "layer: cannot extract \"%.200s\": %.200s", norm,
                   archive_error_string(w));
      goto out;
    }
    if (type == AE_IFREG && !hl) {
      const void *buf;
      size_t size;
      la_int64_t off;
      while ((r = archive_read_data_block(a, &buf, &size, &off)) == ARCHIVE_OK) {
        state->written += size;
        CT_ENSURE_GOTO(st, state->written <= CDH_UNPACKED_MAX, out, err, CT_ELIMIT,
                       "layer: the image unpacks to more than %llu bytes",
                       (unsigned long long)CDH_UNPACKED_MAX);
        if (archive_write_data_block(w, buf, size, off) != ARCHIVE_OK) {
          st = ct_fail(err, CT_EIO, "layer: writing \"%.200s\": %.200s", norm, archive_error_string(w));
          goto out;
        }
      }
      if (r != ARCHIVE_EOF) {
        st = ct_fail(err, CT_EINVAL, "layer: reading \"%.200s\": %.200s", norm, archive_error_string(a));
        goto out;
      }
    }
    if (archive_write_finish_entry(w) != ARCHIVE_OK) {
      st = ct_fail(err, CT_EIO, "layer: finishing \"%.200s\": %.200s", norm, archive_error_string(w));
      goto out;
    }
  }
  if (r != ARCHIVE_EOF)
    st = ct_fail(err, CT_EINVAL, "layer: unreadable archive: %.200s", archive_error_string(a));
out:
  if (w) {
    archive_write_close(w);
    archive_write_free(w);
  }
  if (a) archive_read_free(a);
  return st;
}

CT_RESULT cdh_unpack_layer(const char *root, const uint8_t *blob, size_t len, cdh_unpack_state *state,
                           ct_err *err) {
  cdh__src src = {.blob = blob, .len = len, .fd = -1};
  return cdh__unpack(root, &src, state, err);
}

CT_RESULT cdh_unpack_layer_fd(const char *root, int fd, cdh_unpack_state *state, ct_err *err) {
  CT_ENSURE(fd >= 0, err, CT_EINVAL, "layer: no file to unpack");
  cdh__src src = {.fd = fd};
  return cdh__unpack(root, &src, state, err);
}

void cdh_unpack_clear(const char *root) {
  int fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) cdh__clear_dir(fd, 0);
}
