/*
 * ct_reader: bounds, byte order, sticky first failure, sub-readers and messages.
 */
#include "ct_test_util.h"

#include "ct_reader.h"

static const uint8_t bytes[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b};

static void test_orders_and_widths(void **state) {
  (void)state;
  ct_reader r;
  ct_reader_init(&r, bytes, sizeof bytes, "test");
  assert_int_equal(ct_read_u8(&r, "a"), 0x01);
  assert_int_equal(ct_read_u16le(&r, "b"), 0x0302);
  assert_int_equal(ct_read_u16be(&r, "c"), 0x0405);
  assert_int_equal(ct_reader_offset(&r), 5);
  assert_int_equal(ct_reader_remaining(&r), 6);
  ct_reader_init(&r, bytes, sizeof bytes, "test");
  assert_int_equal(ct_read_u32le(&r, "d"), 0x04030201u);
  assert_int_equal(ct_read_u32be(&r, "e"), 0x05060708u);
  ct_reader_init(&r, bytes, sizeof bytes, "test");
  assert_true(ct_read_u64le(&r, "f") == 0x0807060504030201ull);
  ct_reader_init(&r, bytes, sizeof bytes, "test");
  assert_true(ct_read_u64be(&r, "g") == 0x0102030405060708ull);
  const uint8_t *p = ct_read_bytes(&r, 3, "h");
  assert_ptr_equal(p, bytes + 8);
  assert_int_equal(ct_reader_remaining(&r), 0);
  ct_err err;
  CT_ASSERT_OK(ct_reader_status(&r, &err), &err);
  /* Positional reads leave the cursor alone. */
  ct_reader_init(&r, bytes, sizeof bytes, "test");
  assert_int_equal(ct_peek_u16be(&r, 9, "i"), 0x0a0b);
  assert_int_equal(ct_peek_u32le(&r, 1, "j"), 0x05040302u);
  assert_int_equal(ct_peek_u8(&r, 10, "k"), 0x0b);
  assert_true(ct_peek_u64be(&r, 3, "l") == 0x0405060708090a0bull);
  assert_ptr_equal(ct_peek_bytes(&r, 11, 0, "m"), bytes + 11);
  assert_int_equal(ct_reader_offset(&r), 0);
  CT_ASSERT_OK(ct_reader_status(&r, &err), &err);
}

static void test_sticky_failure(void **state) {
  (void)state;
  ct_reader r;
  ct_err err;
  ct_reader_init(&r, bytes, sizeof bytes, "widget");
  ct_read_skip(&r, 8, "header");
  assert_int_equal(ct_read_u32le(&r, "length"), 0); /* 3 bytes left */
  assert_false(ct_reader_ok(&r));
  assert_int_equal(ct_reader_remaining(&r), 0);
  /* Later reads that would fit still fail, and the first failure is the one reported. */
  assert_int_equal(ct_read_u8(&r, "flags"), 0);
  assert_null(ct_read_bytes(&r, 0, "empty"));
  assert_int_equal(ct_reader_status(&r, &err), CT_EINVAL);
  assert_string_equal(err.msg, "widget: truncated at offset 8: length needs 4 bytes, 3 remain");
  /* Huge lengths cannot wrap the bound check. */
  ct_reader_init(&r, bytes, sizeof bytes, "widget");
  ct_read_skip(&r, 4, "a");
  assert_null(ct_read_bytes(&r, SIZE_MAX, "blob"));
  assert_int_equal(ct_peek_u8(&r, SIZE_MAX, "far"), 0);
  assert_int_equal(ct_reader_status(&r, &err), CT_EINVAL);
  assert_non_null(strstr(err.msg, "blob needs"));
  ct_reader_init(&r, bytes, sizeof bytes, "widget");
  assert_int_equal(ct_peek_u16le(&r, 10, "tail"), 0);
  assert_int_equal(ct_reader_status(&r, &err), CT_EINVAL);
  assert_string_equal(err.msg, "widget: truncated at offset 10: tail needs 2 bytes, 1 remain");
  /* A caller's own reason. */
  ct_reader_init(&r, bytes, sizeof bytes, "widget");
  ct_read_u16le(&r, "kind");
  ct_reader_fail(&r, "kind", "must be 7");
  ct_reader_fail(&r, "later", "ignored");
  assert_int_equal(ct_reader_status(&r, &err), CT_EINVAL);
  assert_string_equal(err.msg, "widget: at offset 2: kind: must be 7");
  /* An empty or NULL buffer. */
  ct_reader_init(&r, NULL, 5, "nothing");
  assert_int_equal(ct_read_u8(&r, "x"), 0);
  assert_int_equal(ct_reader_status(&r, &err), CT_EINVAL);
}

static void test_sub_reader(void **state) {
  (void)state;
  ct_reader r;
  ct_err err;
  ct_reader_init(&r, bytes, sizeof bytes, "outer");
  ct_read_u8(&r, "tag");
  ct_reader s = ct_reader_sub(&r, 4, "record");
  assert_int_equal(ct_reader_offset(&r), 5);
  assert_int_equal(ct_read_u32be(&s, "value"), 0x02030405u);
  assert_int_equal(ct_read_u8(&s, "beyond"), 0);
  assert_int_equal(ct_reader_status(&s, &err), CT_EINVAL);
  assert_string_equal(err.msg, "record: truncated at offset 4: beyond needs 1 bytes, 0 remain");
  CT_ASSERT_OK(ct_reader_status(&r, &err), &err); /* the parent is unaffected */
  ct_reader big = ct_reader_sub(&r, 100, "big record");
  assert_false(ct_reader_ok(&big));
  assert_false(ct_reader_ok(&r));
  assert_int_equal(ct_reader_status(&r, &err), CT_EINVAL);
  assert_string_equal(err.msg, "outer: truncated at offset 5: big record needs 100 bytes, 6 remain");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_orders_and_widths),
      cmocka_unit_test(test_sticky_failure),
      cmocka_unit_test(test_sub_reader),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
