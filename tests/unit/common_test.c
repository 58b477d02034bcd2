#include "ct_test_util.h"

#include "ct_buf.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_file.h"
#include "ct_json.h"
#include "ct_mem.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_jcs_trustee_vector(void **state) {
  (void)state;
  ct_err err;
  json_t *v = NULL;
  const char *in = "{\"b\":1,\"a\":\"test\",\"c\":{\"d\":\"e\"}}";
  CT_ASSERT_OK(ct_json_parse(in, strlen(in), 8, &v, &err), &err);
  char *canon = NULL;
  size_t len = 0;
  CT_ASSERT_OK(ct_jcs_string(v, &canon, &len, &err), &err);
  assert_string_equal(canon, "{\"a\":\"test\",\"b\":1,\"c\":{\"d\":\"e\"}}");
  uint8_t d[48];
  ct_sha384(canon, len, d);
  char hex[97];
  ct_hex_into(d, sizeof d, hex);
  assert_string_equal(hex, "e71ce8e70d814ba6639c3612ebee0ff1f76f650f8dbb5e47157e0f3f525cd22c"
                           "4597480a186427c813ca941da78870c3");
  free(canon);
  json_decref(v);
}

static void test_jcs_numbers_and_strings(void **state) {
  (void)state;
  /* RFC 8785 appendix B number samples and escaping rules. */
  struct { const char *in, *out; } cases[] = {
      {"[1e21]", "[1e+21]"},
      {"[0.000001]", "[0.000001]"},
      {"[1e-7]", "[1e-7]"},
      {"[4.5]", "[4.5]"},
      {"[0.1]", "[0.1]"},
      {"[-0.0]", "[0]"},
      {"[123456789012345680000.0]", "[123456789012345680000]"},
      {"[333333333.3333333]", "[333333333.3333333]"},
      {"[\"\\u000f\\u001F\\n/\\u20ac\"]", "[\"\\u000f\\u001f\\n/\xe2\x82\xac\"]"},
      {"{\"\\u20ac\":1,\"\\ud83d\\ude00\":2,\"\\r\":3,\"1\":4,\"\\u0080\":5,\"\\u00f6\":6}",
       "{\"\\r\":3,\"1\":4,\"\xc2\x80\":5,\"\xc3\xb6\":6,\"\xe2\x82\xac\":1,\"\xf0\x9f\x98\x80\":2}"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ct_err err;
    json_t *v = NULL;
    CT_ASSERT_OK(ct_json_parse(cases[i].in, strlen(cases[i].in), 8, &v, &err), &err);
    char *canon = NULL;
    size_t len;
    CT_ASSERT_OK(ct_jcs_string(v, &canon, &len, &err), &err);
    assert_string_equal(canon, cases[i].out);
    free(canon);
    json_decref(v);
  }
}

static void test_json_strictness(void **state) {
  (void)state;
  ct_err err;
  json_t *v = NULL;
  const char *dup = "{\"a\":1,\"a\":2}";
  assert_int_equal(ct_json_parse(dup, strlen(dup), 8, &v, &err), CT_EINVAL);
  assert_non_null(strstr(err.msg, "duplicate"));
  const char *deep = "[[[[[[[[[[1]]]]]]]]]]";
  assert_int_equal(ct_json_parse(deep, strlen(deep), 5, &v, &err), CT_ELIMIT);
  const char *brackets_in_string = "[\"[[[[[[[[[[[[\"]";
  CT_ASSERT_OK(ct_json_parse(brackets_in_string, strlen(brackets_in_string), 2, &v, &err), &err);
  json_decref(v);
  const char *trailing = "{} x";
  assert_int_equal(ct_json_parse(trailing, strlen(trailing), 8, &v, &err), CT_EINVAL);
}

static void test_base64(void **state) {
  (void)state;
  ct_err err;
  const uint8_t data[] = {0xfb, 0xff, 0xfe, 0x01};
  char *s = NULL;
  CT_ASSERT_OK(ct_b64_encode(CT_B64_STD, data, 4, &s, &err), &err);
  assert_string_equal(s, "+//+AQ==");
  free(s);
  CT_ASSERT_OK(ct_b64_encode(CT_B64_URL, data, 4, &s, &err), &err);
  assert_string_equal(s, "-__-AQ");
  uint8_t *out = NULL;
  size_t n = 0;
  CT_ASSERT_OK(ct_b64_decode(CT_B64_URL, s, strlen(s), &out, &n, &err), &err);
  assert_int_equal(n, 4);
  assert_memory_equal(out, data, 4);
  free(out);
  free(s);
  assert_int_equal(ct_b64_decode(CT_B64_URL, "AQ==", 4, &out, &n, &err), CT_EINVAL);
  assert_int_equal(ct_b64_decode(CT_B64_STD, "AQ", 2, &out, &n, &err), CT_EINVAL);
  assert_int_equal(ct_b64_decode(CT_B64_STD, "AR==", 4, &out, &n, &err), CT_EINVAL);
  CT_ASSERT_OK(ct_b64_decode(CT_B64_ANY, "-_8=", 4, &out, &n, &err), &err);
  assert_int_equal(n, 2);
  free(out);
}

/* The encoder against OpenSSL's (standard alphabet; base64url is its translation without
 * padding) for every length up to 300 of random bytes, and every byte value in each position of
 * a group. */
static void test_base64_against_openssl(void **state) {
  (void)state;
  ct_err err;
  uint8_t in[300];
  unsigned char want[404];
  unsigned r = 7;
  for (int round = 0; round < 4; round++) {
    for (size_t len = 0; len <= sizeof in; len++) {
      for (size_t i = 0; i < len; i++) in[i] = (uint8_t)((r = r * 1103515245u + 12345u) >> 16);
      if (round == 3 && len >= 3) in[len % 3] = (uint8_t)len; /* 0..255 at each group position */
      int n = EVP_EncodeBlock(want, in, (int)len);
      char *got = NULL;
      CT_ASSERT_OK(ct_b64_encode(CT_B64_STD, in, len, &got, &err), &err);
      assert_int_equal(strlen(got), (size_t)n);
      assert_memory_equal(got, want, (size_t)n);
      free(got);
      for (int i = 0; i < n; i++) want[i] = want[i] == '+' ? '-' : want[i] == '/' ? '_' : want[i];
      while (n > 0 && want[n - 1] == '=') want[--n] = 0;
      CT_ASSERT_OK(ct_b64_encode(CT_B64_URL, in, len, &got, &err), &err);
      assert_int_equal(strlen(got), (size_t)n);
      assert_memory_equal(got, want, (size_t)n);
      /* the stack variants: the same text, and the bytes back (a buffer one short is refused) */
      char into[CT_B64_ENCODED_MAX(sizeof in) + 1];
      assert_int_equal(ct_b64_encode_into(CT_B64_URL, in, len, into), (size_t)n);
      assert_string_equal(into, got);
      uint8_t back[sizeof in + 1];
      size_t blen = 0;
      CT_ASSERT_OK(ct_b64_decode_into(CT_B64_URL, got, (size_t)n, back, len + 1, &blen, &err), &err);
      assert_int_equal(blen, len);
      if (len) assert_memory_equal(back, in, len);
      if (len) assert_int_equal(ct_b64_decode_into(CT_B64_URL, got, (size_t)n, back, len, &blen, &err), CT_ELIMIT);
      free(got);
    }
  }
}

/* JCS escapes with runs copied sixteen bytes at a time: every byte value at every position of a
 * 40-byte string, against the escaping written out here byte by byte. */
static void test_jcs_every_byte_at_every_position(void **state) {
  (void)state;
  ct_err err;
  char buf[48], want[48 * 6 + 3];
  for (unsigned c = 1; c < 256; c++) {
    for (size_t pos = 0; pos < 40; pos++) {
      memset(buf, 'a', sizeof buf);
      buf[pos] = (char)c;
      size_t w = 0;
      want[w++] = '"';
      for (size_t i = 0; i < 40; i++) {
        unsigned char b = (unsigned char)buf[i];
        const char *named = b == '"' ? "\\\"" : b == '\\' ? "\\\\" : b == '\b' ? "\\b" : b == '\f' ? "\\f"
                          : b == '\n' ? "\\n" : b == '\r' ? "\\r" : b == '\t' ? "\\t" : NULL;
        if (named) w += (size_t)sprintf(want + w, "%s", named);
        else if (b < 0x20) w += (size_t)sprintf(want + w, "\\u%04x", b);
        else want[w++] = (char)b;
      }
      want[w++] = '"';
      want[w] = 0;
      json_t *v = json_stringn_nocheck(buf, 40);
      char *got = NULL;
      size_t n = 0;
      CT_ASSERT_OK(ct_jcs_string(v, &got, &n, &err), &err);
      assert_int_equal(n, w);
      assert_string_equal(got, want);
      free(got);
      json_decref(v);
    }
  }
}

/* The nesting limit is checked before parsing, skipping plain runs sixteen bytes at a time:
 * brackets inside strings (after escaped quotes and backslashes, at every offset) never count. */
static void test_json_depth_limit_with_strings(void **state) {
  (void)state;
  ct_err err;
  for (size_t pad = 0; pad < 40; pad++) {
    for (size_t depth = 6; depth <= 8; depth++) {
      char text[512];
      size_t w = 0;
      for (size_t i = 0; i < depth; i++) text[w++] = '[';
      text[w++] = '"';
      for (size_t i = 0; i < pad; i++) text[w++] = 'x';
      w += (size_t)sprintf(text + w, "\\\"[[{{\\\\]}");
      for (size_t i = 0; i < pad; i++) text[w++] = 'y';
      text[w++] = '"';
      for (size_t i = 0; i < depth; i++) text[w++] = ']';
      text[w] = 0;
      json_t *v = NULL;
      ct_status st = ct_json_parse(text, w, 7, &v, &err);
      if (depth <= 7) {
        CT_ASSERT_OK(st, &err);
        json_decref(v);
      } else {
        assert_int_equal(st, CT_ELIMIT);
        assert_non_null(strstr(err.msg, "nesting deeper than 7"));
      }
    }
  }
}

/* ct_buf_printf formats short texts once on the stack and long ones in place: the same bytes
 * either way, appended after what is there, and the buffer's cap refuses both alike. */
static void test_buf_printf(void **state) {
  (void)state;
  ct_err err;
  char want[2000];
  for (int len = 0; len < 600; len += 7) {
    ct_buf b;
    ct_buf_init(&b, 1u << 20);
    CT_ASSERT_OK(ct_buf_append_str(&b, "head:", &err), &err);
    CT_ASSERT_OK(ct_buf_printf(&b, &err, "%d<%.*s>%s", len, len, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "tail"), &err);
    int n = snprintf(want, sizeof want, "head:%d<%.*s>%s", len, len, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "tail");
    assert_int_equal(b.len, (size_t)n);
    assert_string_equal((const char *)b.data, want);
    ct_buf_free(&b);
    ct_buf_init(&b, 100);
    ct_status st = ct_buf_printf(&b, &err, "%0*d", len, 1);
    if (len <= 100) CT_ASSERT_OK(st, &err);
    else assert_int_equal(st, CT_ELIMIT);
    ct_buf_free(&b);
  }
}

static void test_hex_and_secret_compare(void **state) {
  (void)state;
  ct_err err;
  uint8_t *out = NULL;
  size_t n;
  CT_ASSERT_OK(ct_hex_decode("00aBff", 6, &out, &n, &err), &err);
  assert_int_equal(n, 3);
  assert_int_equal(out[1], 0xab);
  free(out);
  assert_int_equal(ct_hex_decode("0g", 2, &out, &n, &err), CT_EINVAL);
  assert_int_equal(ct_hex_decode("abc", 3, &out, &n, &err), CT_EINVAL);
  assert_true(ct_memeq("abc", 3, "abc", 3));
  assert_false(ct_memeq("abc", 3, "abd", 3));
  assert_false(ct_memeq("abc", 3, "abcd", 4));
  assert_true(ct_streq_secret("token", "token"));
  assert_false(ct_streq_secret("token", NULL));
}

static void test_buf_cap(void **state) {
  (void)state;
  ct_err err;
  ct_buf b;
  ct_buf_init(&b, 8);
  CT_ASSERT_OK(ct_buf_append_str(&b, "12345678", &err), &err);
  assert_int_equal(ct_buf_append_str(&b, "9", &err), CT_ELIMIT);
  assert_null(b.data); /* the buffer freed itself */
}

/* A Kubernetes Secret/ConfigMap volume: <key> -> ..data/<key>, ..data -> ..<timestamp>/. */
static void test_file_read_beneath(void **state) {
  (void)state;
  char root[] = "/tmp/ct_beneath_XXXXXX";
  assert_non_null(mkdtemp(root));
  char p[256], q[256];
  snprintf(p, sizeof p, "%s/vol", root);
  assert_int_equal(mkdir(p, 0700), 0);
  snprintf(p, sizeof p, "%s/vol/..2026_12_03_10_00_00.000000001", root);
  assert_int_equal(mkdir(p, 0700), 0);
  ct_err err;
  snprintf(p, sizeof p, "%s/vol/..2026_12_03_10_00_00.000000001/key", root);
  CT_ASSERT_OK(ct_file_write_atomic(p, "value", 5, 0600, &err), &err);
  snprintf(p, sizeof p, "%s/secret", root);
  CT_ASSERT_OK(ct_file_write_atomic(p, "outside", 7, 0600, &err), &err);
  snprintf(p, sizeof p, "%s/vol/..data", root);
  assert_int_equal(symlink("..2026_12_03_10_00_00.000000001", p), 0);
  snprintf(p, sizeof p, "%s/vol/key", root);
  assert_int_equal(symlink("..data/key", p), 0);
  snprintf(p, sizeof p, "%s/vol/up", root);
  assert_int_equal(symlink("../secret", p), 0);
  snprintf(p, sizeof p, "%s/vol/abs", root);
  snprintf(q, sizeof q, "%s/secret", root);
  assert_int_equal(symlink(q, p), 0);
  snprintf(p, sizeof p, "%s/vol/proc", root);
  assert_int_equal(symlink("/proc/self/environ", p), 0);
  snprintf(p, sizeof p, "%s/vol", root);
  int dfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_true(dfd >= 0);

  uint8_t *data = NULL;
  size_t len = 0;
  CT_ASSERT_OK(ct_file_read_beneath(dfd, "key", 64, &data, &len, &err), &err);
  assert_int_equal(len, 5);
  assert_memory_equal(data, "value", 5);
  free(data);
  const char *escapes[] = {"up", "abs", "proc", "../secret"};
  for (size_t i = 0; i < 4; i++) {
    assert_int_equal(ct_file_read_beneath(dfd, escapes[i], 64, &data, &len, &err), CT_EIO);
    if (!strstr(err.msg, "leads out of its directory")) fail_msg("%s: %s", escapes[i], err.msg);
  }
  assert_int_equal(ct_file_read_beneath(dfd, "missing", 64, &data, &len, &err), CT_ENOTFOUND);
  assert_int_equal(ct_file_read_beneath(dfd, "key", 4, &data, &len, &err), CT_ELIMIT);
  close(dfd);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", root);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_file_read_beneath),
      cmocka_unit_test(test_jcs_trustee_vector),
      cmocka_unit_test(test_jcs_numbers_and_strings),
      cmocka_unit_test(test_json_strictness),
      cmocka_unit_test(test_base64),
      cmocka_unit_test(test_base64_against_openssl),
      cmocka_unit_test(test_jcs_every_byte_at_every_position),
      cmocka_unit_test(test_json_depth_limit_with_strings),
      cmocka_unit_test(test_buf_printf),
      cmocka_unit_test(test_hex_and_secret_compare),
      cmocka_unit_test(test_buf_cap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
