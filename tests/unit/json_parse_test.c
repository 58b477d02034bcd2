/*
 * ct_json_parse's reader against jansson's json_loadb(JSON_REJECT_DUPLICATES | JSON_DECODE_ANY):
 * every input must be accepted by both with equal values (same types) or refused by both.
 * Crafted edge cases, every fuzz corpus file and thousands of mutations of them.
 */
#include "ct_test_util.h"

#include <dirent.h>
#include <sys/stat.h>

#include "ct_json.h"

CT_RESULT ct_json__read(const char *buf, size_t len, json_t **out, ct_err *err);

static size_t compared, accepted;

static void differ(const char *buf, size_t len) {
  json_error_t jerr;
  json_t *want = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
  json_t *got = NULL;
  ct_err err;
  ct_status st = ct_json__read(buf, len, &got, &err);
  compared++;
  bool same = want ? st == CT_OK && json_equal(want, got) : st != CT_OK;
  /* The one deliberate difference: jansson's read-ahead buffer uses NUL as "empty", so a NUL byte
   * right after a number or literal is silently dropped ("[1\0]" parses); ours refuses it like
   * any other byte outside the grammar. */
  if (!same && want && st != CT_OK && memchr(buf, 0, len)) same = true;
  if (!same) {
    fprintf(stderr, "readers disagree on %zu bytes: jansson %s, ours %s\n", len, want ? "accepts" : jerr.text,
            st == CT_OK ? "accepts" : err.msg);
    for (size_t i = 0; i < len && i < 200; i++) fprintf(stderr, "%02x", (unsigned char)buf[i]);
    fprintf(stderr, "\n");
  }
  accepted += want != NULL;
  json_decref(want);
  json_decref(got);
  assert_true(same);
}

static void differ_str(const char *s) { differ(s, strlen(s)); }

static const char *const crafted[] = {
    "0", "-0", "-", "01", "-01", "1.", ".5", "1e", "1e+", "1E5", "1e-5", "-1.5e-3", "1.0", "-0.0", "2.5E+10",
    "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
    "99999999999999999999", "1e309", "-1e309", "1e-400", "123456789012345678901234567890.5",
    "0.000000000000000000000000000000000000000000000000001", "1x", "1 2", "[1 2]", "- 1", "+1", "0x10", "NaN",
    "Infinity", "\"\"", "\"abc\"", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\u0041\\u00e9\\u4e2d\"", "\"\\ud83d\\ude00\"",
    "\"\\ud83d\"", "\"\\ud83dx\"", "\"\\ude00\"", "\"\\ud83d\\u0041\"", "\"\\u0000\"", "\"\\u00\"", "\"\\x41\"",
    "\"\\U0041\"", "\"a\x01\"", "\"a\x1f\"", "\"a\x7f\"", "\"\xc3\xa9\"", "\"\xc0\x80\"", "\"\xe0\x80\x80\"",
    "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xf5\x80\x80\x80\"", "\"\xc3\"", "\"\xe4\xb8\"", "\"abc",
    "\"abc\\", "\"\\u12", "true", "false", "null", "tru", "truex", "nul", "nulll", "True", "[true,false,null]",
    "[]", "{}", "[1,]", "[,1]", "[1,,2]", "{\"a\":1,}", "{\"a\"}", "{\"a\":}", "{\"a\" 1}", "{1:2}", "{\"a\":1 \"b\":2}",
    "{\"a\":1,\"a\":2}", "{\"a\":{\"b\":1,\"b\":2}}", "{\"a\\u0062\":1,\"ab\":2}", "{\"\":1}", "{\"\\u0000\":1}",
    "[[[[[]]]]]", "{\"a\":[{\"b\":[{}]}]}", " \t\n\r[ 1 , 2 ] \n", "\f1", "\v1", "1\f", "", "   ", "\xef\xbb\xbf{}",
    "[] x", "{}}", "[[]", "[\"a\",\"b\"", "{\"a\":1", "\x00", "[\x00]", "\"a\x00b\"", "{\"k\":\"v\",\"k2\":[1,2.5,-3e2]}",
};

static void test_crafted(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof crafted / sizeof *crafted; i++) differ_str(crafted[i]);
  /* Embedded NUL bytes, which C string literals above cannot show past the first. */
  differ("[1,\0]", 5);
  differ("\"a\0\"", 4);
  /* Nesting at and past jansson's own limit (2048 levels counting the top value). */
  for (int depth = 2045; depth <= 2050; depth++) {
    char *buf = malloc((size_t)depth * 2 + 1);
    memset(buf, '[', (size_t)depth);
    memset(buf + depth, ']', (size_t)depth);
    differ(buf, (size_t)depth * 2);
    buf[depth - 1] = '1'; /* a scalar innermost */
    memset(buf + depth - 1, '1', 1);
    differ(buf, (size_t)depth * 2 - 1);
    free(buf);
  }
}

static unsigned rnd_state = 4242;
static unsigned rnd(void) {
  rnd_state = rnd_state * 1103515245u + 12345u;
  return rnd_state >> 8;
}

static void mutate_and_differ(const char *src, size_t len, int rounds) {
  static const char alphabet[] = "{}[]\",:\\0123456789-+.eEtrufalsn \t\n\x01\x7f\xc3\xa9\xed\xa0\xf0";
  char *buf = malloc(len + 8);
  for (int r = 0; r < rounds; r++) {
    memcpy(buf, src, len);
    size_t n = len;
    for (unsigned k = 1 + rnd() % 3; k; k--) {
      unsigned op = rnd() % 4;
      size_t at = n ? rnd() % n : 0;
      if (op == 0 && n) buf[at] = alphabet[rnd() % (sizeof alphabet - 1)];
      else if (op == 1 && n) buf[at] = (char)((unsigned char)buf[at] ^ (1u << (rnd() % 8)));
      else if (op == 2 && n) {
        memmove(buf + at, buf + at + 1, n - at - 1);
        n--;
      } else if (op == 3 && n < len + 7) {
        memmove(buf + at + 1, buf + at, n - at);
        buf[at] = alphabet[rnd() % (sizeof alphabet - 1)];
        n++;
      }
    }
    differ(buf, n);
  }
  free(buf);
}

static void test_mutations_of_crafted(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof crafted / sizeof *crafted; i++) mutate_and_differ(crafted[i], strlen(crafted[i]), 200);
}

/* Every seed of every fuzz target: JSON documents, evidence, tokens, and plenty that is not. */
static void walk(const char *dir, int depth) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(path, &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      if (depth < 3) walk(path, depth + 1);
      continue;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > (1 << 20)) continue;
    uint8_t *data = NULL;
    size_t len = 0;
    ct_err err;
    if (ct_file_read(path, 1u << 20, &data, &len, &err) != CT_OK) continue;
    differ((const char *)data, len);
    mutate_and_differ((const char *)data, len, len < 4096 ? 20 : 3);
    free(data);
  }
  closedir(d);
}

static void test_corpora(void **state) {
  (void)state;
  const char *src = getenv("CT_SOURCE_DIR");
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus", src ? src : "..");
  size_t before = compared;
  walk(dir, 0);
  if (compared == before) {
    fprintf(stderr, "no fuzz corpus under %s\n", dir);
    skip();
  }
  fprintf(stderr, "json readers compared on %zu inputs (%zu valid JSON)\n", compared, accepted);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crafted),
      cmocka_unit_test(test_mutations_of_crafted),
      cmocka_unit_test(test_corpora),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
