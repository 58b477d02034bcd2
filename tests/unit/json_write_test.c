/*
 * ct_json_write / ct_json_dump must write exactly what json_dumps writes (tokens are signed over
 * these bytes, clients parse them): crafted values and random trees compared byte for byte.
 */
#include "ct_test_util.h"

#include "ct_buf.h"
#include "ct_json.h"

static void same(const json_t *v) {
  for (int sorted = 0; sorted <= 1; sorted++) {
    size_t flags = JSON_COMPACT | JSON_ENCODE_ANY | (sorted ? JSON_SORT_KEYS : 0);
    char *want = json_dumps(v, flags);
    ct_buf b;
    ct_buf_init(&b, 1u << 24);
    ct_err err;
    ct_status st = ct_json_write(v, sorted, &b, &err);
    if (!want) {
      assert_int_not_equal(st, CT_OK);
      ct_buf_free(&b);
      char *dump = NULL;
      assert_int_not_equal(ct_json_dump(v, &dump, &err), CT_OK);
      continue;
    }
    CT_ASSERT_OK(st, &err);
    assert_string_equal((const char *)b.data, want);
    if (sorted) {
      char *dump = NULL;
      CT_ASSERT_OK(ct_json_dump(v, &dump, &err), &err);
      assert_string_equal(dump, want);
      free(dump);
    }
    ct_buf_free(&b);
    free(want);
  }
}

static void test_crafted(void **state) {
  (void)state;
  const char *texts[] = {
      "null", "true", "false", "0", "-1", "9223372036854775807", "-9223372036854775808", "1.5", "1e300", "-0.0",
      "0.1", "\"\"", "\"plain\"", "\"quote \\\" backslash \\\\ slash /\"", "\"\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f\"",
      "\"\\u00e9\\u4e2d\\ud83d\\ude00\"", "[]", "{}", "[[],{},[{}]]",
      "{\"b\":1,\"a\":[1,2,{\"z\":null,\"y\":\"x\"}],\"\\u00e9\":true,\"A\":false,\"aa\":0}",
      "{\"token\":\"eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjF9.c2ln\"}",
  };
  for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
    json_error_t e;
    json_t *v = json_loads(texts[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    assert_non_null(v);
    same(v);
    json_decref(v);
  }
  /* Embedded NUL in a string value and a key. */
  json_t *o = json_object();
  json_object_setn_new(o, "k\0ey", 4, json_stringn("v\0al", 4));
  json_object_set_new(o, "k", json_string("first"));
  same(o);
  json_decref(o);
  /* Invalid UTF-8 cannot be serialised by either. */
  json_t *bad = json_stringn_nocheck("\xc0\xae\xff", 3);
  same(bad);
  json_decref(bad);
}

static unsigned rnd_state = 12345;
static unsigned rnd(void) {
  rnd_state = rnd_state * 1103515245u + 12345u;
  return rnd_state >> 8;
}

static json_t *rnd_string(void) {
  static const char *const pieces[] = {"a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\x01", "\x1f", "\x7f",
                                       "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "eyJ", ".", "-_", "%", "\xc2\x80"};
  char buf[256];
  size_t n = 0, parts = rnd() % 12;
  for (size_t i = 0; i < parts; i++) {
    const char *p = pieces[rnd() % (sizeof pieces / sizeof *pieces)];
    size_t k = strlen(p);
    memcpy(buf + n, p, k);
    n += k;
  }
  return json_stringn(buf, n);
}

static json_t *rnd_value(int depth) {
  switch (depth > 4 ? rnd() % 5 : rnd() % 8) {
  case 0: return json_null();
  case 1: return json_boolean(rnd() % 2);
  case 2: return json_integer((json_int_t)rnd() - (json_int_t)(1u << 23));
  case 3: return json_real((double)rnd() / 7.0);
  case 4: return rnd_string();
  case 5: {
    json_t *a = json_array();
    for (unsigned i = rnd() % 6; i; i--) json_array_append_new(a, rnd_value(depth + 1));
    return a;
  }
  default: {
    json_t *o = json_object();
    for (unsigned i = rnd() % 7; i; i--) {
      json_t *k = rnd_string();
      json_object_setn_new(o, json_string_value(k), json_string_length(k), rnd_value(depth + 1));
      json_decref(k);
    }
    return o;
  }
  }
}

static void test_random_trees(void **state) {
  (void)state;
  for (int i = 0; i < 3000; i++) {
    json_t *v = rnd_value(0);
    same(v);
    json_decref(v);
  }
}

/* The writer looks at strings sixteen and eight bytes at a time: every byte value at every
 * position of a block (and across blocks), with plain text around it. Bytes that are not UTF-8 on their own
 * must fail as json_dumps fails. */
static void test_every_byte_at_every_position(void **state) {
  (void)state;
  char buf[48];
  for (unsigned c = 0; c < 256; c++) {
    for (size_t pos = 0; pos < 40; pos++) {
      for (size_t len = pos + 1; len <= 41; len += 40 - pos > 1 ? 40 - pos : 1) {
        memset(buf, 'a', sizeof buf);
        buf[pos] = (char)c;
        json_t *v = json_stringn_nocheck(buf, len);
        same(v);
        ct_buf b;
        ct_buf_init(&b, 1u << 16);
        ct_err err;
        char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        ct_status st = ct_json_write_string(buf, len, &b, &err);
        if (want) {
          CT_ASSERT_OK(st, &err);
          assert_string_equal((const char *)b.data, want);
        } else {
          assert_int_not_equal(st, CT_OK);
        }
        free(want);
        ct_buf_free(&b);
        json_decref(v);
      }
    }
  }
}

/* Some value inside a tree, chosen at random (or the tree itself). */
static const json_t *rnd_inner(const json_t *v) {
  while (rnd() % 3) {
    size_t n = json_is_array(v) ? json_array_size(v) : json_is_object(v) ? json_object_size(v) : 0;
    if (!n) break;
    size_t k = rnd() % n;
    if (json_is_array(v)) {
      v = json_array_get(v, k);
    } else {
      void *it = json_object_iter((json_t *)v);
      while (k--) it = json_object_iter_next((json_t *)v, it);
      v = json_object_iter_value(it);
    }
  }
  return v;
}

/* A text written once for a value inside a tree and spliced in: the same bytes as writing it
 * all (the EAR payload reuses the annotated evidence's text this way). */
static void test_spliced(void **state) {
  (void)state;
  for (int i = 0; i < 2000; i++) {
    json_t *v = rnd_value(0);
    const json_t *inner = rnd_inner(v);
    for (int sorted = 0; sorted <= 1; sorted++) {
      ct_err err;
      ct_buf in, all, want;
      ct_buf_init(&in, 1u << 24);
      ct_buf_init(&all, 1u << 24);
      ct_buf_init(&want, 1u << 24);
      ct_status st = ct_json_write(inner, sorted, &in, &err);
      if (st != CT_OK) { /* a random string that is not UTF-8: nothing to splice */
        ct_buf_free(&in);
        continue;
      }
      CT_ASSERT_OK(ct_json_write_spliced(v, sorted, inner, in.data ? (const char *)in.data : "", in.len, &all, &err),
                   &err);
      CT_ASSERT_OK(ct_json_write(v, sorted, &want, &err), &err);
      assert_int_equal(all.len, want.len);
      assert_memory_equal(all.data, want.data, want.len);
      ct_buf_free(&in);
      ct_buf_free(&all);
      ct_buf_free(&want);
    }
    /* A value that is not inside the tree changes nothing. */
    json_t *other = json_string("not in the tree");
    ct_err err;
    ct_buf all, want;
    ct_buf_init(&all, 1u << 24);
    ct_buf_init(&want, 1u << 24);
    ct_status a = ct_json_write_spliced(v, true, other, "X", 1, &all, &err);
    ct_status b = ct_json_write(v, true, &want, &err);
    assert_int_equal(a, b);
    if (a == CT_OK) assert_string_equal((const char *)all.data, (const char *)want.data);
    ct_buf_free(&all);
    ct_buf_free(&want);
    json_decref(other);
    json_decref(v);
  }
}

/* ct_json_sorted_copy gives what parsing ct_json_dump's text gives: equal values, members in the
 * same order, and a failure exactly where the parse fails (depth, NUL characters). */
static void same_as_parsed(const json_t *v, size_t max_depth) {
  ct_err err;
  char *text = NULL;
  if (ct_json_dump(v, &text, &err) != CT_OK) return; /* not UTF-8: never written, never copied */
  json_t *parsed = NULL, *copy = NULL;
  size_t bytes = 0;
  ct_status want = ct_json_parse(text, strlen(text), max_depth, &parsed, &err);
  ct_status got = ct_json_sorted_copy(v, max_depth, &copy, &bytes, &err);
  free(text);
  assert_int_equal(got == CT_OK, want == CT_OK);
  if (want == CT_OK) {
    assert_true(json_equal(copy, parsed));
    char *a = json_dumps(copy, JSON_COMPACT | JSON_ENCODE_ANY), *b = json_dumps(parsed, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_string_equal(a, b);
    assert_true(bytes >= strlen(a));
    free(a);
    free(b);
  }
  json_decref(copy);
  json_decref(parsed);
}

static void test_sorted_copy(void **state) {
  (void)state;
  for (int i = 0; i < 3000; i++) {
    json_t *v = rnd_value(0);
    same_as_parsed(v, 64);
    same_as_parsed(v, 2); /* random trees nest up to 6 deep: some fail here */
    json_decref(v);
  }
  json_t *v = json_integer(7);
  for (int i = 0; i < 70; i++) {
    v = i % 2 ? json_pack("{s:o}", "k", v) : json_pack("[o]", v);
    same_as_parsed(v, 64);
  }
  json_decref(v);
  json_t *nul = json_pack("[s%]", "a\0b", (size_t)3);
  same_as_parsed(nul, 64);
  json_decref(nul);
  nul = json_object();
  json_object_setn_new(nul, "k\0", 2, json_null());
  same_as_parsed(nul, 64);
  json_decref(nul);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crafted),
      cmocka_unit_test(test_random_trees),
      cmocka_unit_test(test_every_byte_at_every_position),
      cmocka_unit_test(test_spliced),
      cmocka_unit_test(test_sorted_copy),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
