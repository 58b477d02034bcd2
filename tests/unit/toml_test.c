#include "ct_test_util.h"

#include <math.h>
#include <unistd.h>

#include "ct_json.h"
#include "toml.h"

/* Parses `toml` and compares with `json` (parsed with the strict JSON parser, compared by
 * jansson's deep equality, which treats integers and reals as different types). */
static void expect_json(const char *toml, const char *json) {
  ct_err err;
  json_t *got = NULL, *want = NULL;
  ct_status st = toml_parse(toml, strlen(toml), &got, &err);
  if (st) fail_msg("toml_parse failed on:\n%s\n-> %s", toml, err.msg);
  CT_ASSERT_OK(ct_json_parse(json, strlen(json), 64, &want, &err), &err);
  if (!json_equal(got, want)) {
    char *g = json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT);
    fail_msg("toml:\n%s\ngot:  %s\nwant: %s", toml, g, json);
  }
  json_decref(got);
  json_decref(want);
}

/* Parses `toml`, expects failure whose message contains `needle` (and a line/column prefix). */
static void expect_error(const char *toml, const char *needle) {
  ct_err err;
  ct_err_clear(&err);
  json_t *got = NULL;
  ct_status st = toml_parse(toml, strlen(toml), &got, &err);
  if (st == CT_OK) {
    char *g = json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT);
    fail_msg("expected an error containing \"%s\" for:\n%s\ngot %s", needle, toml, g);
  }
  assert_null(got);
  if (!strstr(err.msg, needle)) fail_msg("for:\n%s\nerror \"%s\" lacks \"%s\"", toml, err.msg, needle);
  if (strncmp(err.msg, "line ", 5) != 0) fail_msg("error \"%s\" lacks a position", err.msg);
}

static void test_scalars(void **state) {
  (void)state;
  expect_json("", "{}");
  expect_json("# only a comment\n\n", "{}");
  expect_json("a = 1\nb = -17\nc = +99\nd = 0\ne = 1_000_000\nf = -0",
              "{\"a\":1,\"b\":-17,\"c\":99,\"d\":0,\"e\":1000000,\"f\":0}");
  expect_json("h = 0xDEAD_beef\no = 0o755\nb = 0b1101_0110\nmax = 0x7fffffffffffffff",
              "{\"h\":3735928559,\"o\":493,\"b\":214,\"max\":9223372036854775807}");
  expect_json("big = 9223372036854775807\nsmall = -9223372036854775808",
              "{\"big\":9223372036854775807,\"small\":-9223372036854775808}");
  expect_json("f1 = 1.0\nf2 = 3.1415\nf3 = -0.01\nf4 = 5e+22\nf5 = 1e06\nf6 = -2E-2\nf7 = 6.626e-34\n"
              "f8 = 224_617.445_991\nf9 = 0.0",
              "{\"f1\":1.0,\"f2\":3.1415,\"f3\":-0.01,\"f4\":5e22,\"f5\":1e6,\"f6\":-0.02,"
              "\"f7\":6.626e-34,\"f8\":224617.445991,\"f9\":0.0}");
  expect_json("t = true\nf = false", "{\"t\":true,\"f\":false}");
  expect_json("odt1 = 1979-05-27T07:32:00Z\nodt2 = 1979-05-27T00:32:00-07:00\n"
              "odt3 = 1979-05-27T00:32:00.999999+05:30\nodt4 = 1979-05-27 07:32:00z\n"
              "ldt = 1979-05-27T07:32:00\nld = 1979-05-27\nlt = 00:32:00.999999\nleap = 2000-02-29",
              "{\"odt1\":\"1979-05-27T07:32:00Z\",\"odt2\":\"1979-05-27T00:32:00-07:00\","
              "\"odt3\":\"1979-05-27T00:32:00.999999+05:30\",\"odt4\":\"1979-05-27T07:32:00Z\","
              "\"ldt\":\"1979-05-27T07:32:00\",\"ld\":\"1979-05-27\",\"lt\":\"00:32:00.999999\","
              "\"leap\":\"2000-02-29\"}");
  /* A date followed by a comment is just a date. */
  expect_json("d = 1979-05-27 # birthday", "{\"d\":\"1979-05-27\"}");
}

static void test_strings(void **state) {
  (void)state;
  expect_json("s = \"I'm a string. \\\"You can quote me\\\". Name\\tJos\\u00E9\\nLocation\\tSF.\"",
              "{\"s\":\"I'm a string. \\\"You can quote me\\\". Name\\tJos\\u00e9\\nLocation\\tSF.\"}");
  expect_json("e = \"\\b\\f\\r\\\\ \\U0001F600\"", "{\"e\":\"\\b\\f\\r\\\\ \\ud83d\\ude00\"}");
  expect_json("s = \"\"\"\nRoses are red\nViolets are blue\"\"\"",
              "{\"s\":\"Roses are red\\nViolets are blue\"}");
  expect_json("s = \"\"\"\r\nwin\r\ndows\"\"\"", "{\"s\":\"win\\ndows\"}");
  expect_json("s = \"\"\"\nThe quick brown \\\n\n\n  fox jumps over \\\n    the lazy dog.\"\"\"",
              "{\"s\":\"The quick brown fox jumps over the lazy dog.\"}");
  expect_json("s = \"\"\"Here are two quotation marks: \"\". Simple enough.\"\"\"",
              "{\"s\":\"Here are two quotation marks: \\\"\\\". Simple enough.\"}");
  expect_json("s = \"\"\"\"This,\" she said, \"is just a pointless statement.\"\"\"\"",
              "{\"s\":\"\\\"This,\\\" she said, \\\"is just a pointless statement.\\\"\"}");
  expect_json("p = 'C:\\Users\\nodejs\\templates'\nq = '<\\i\\c*\\s*>'",
              "{\"p\":\"C:\\\\Users\\\\nodejs\\\\templates\",\"q\":\"<\\\\i\\\\c*\\\\s*>\"}");
  expect_json("r = '''\nThe first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved.\n'''",
              "{\"r\":\"The first newline is\\ntrimmed in raw strings.\\n   All other whitespace\\n   is preserved.\\n\"}");
  expect_json("q = '''Here are fifteen quotation marks: \"\"\"\"\"\"\"\"\"\"\"\"\"\"\"'''\n"
              "a = '''''That,' she said, 'is still pointless.'''''",
              "{\"q\":\"Here are fifteen quotation marks: \\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\\\"\","
              "\"a\":\"''That,' she said, 'is still pointless.''\"}");
  expect_json("tab = \"a\tb\"\nutf = \"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"\nempty = \"\"\nlit = ''",
              "{\"tab\":\"a\\tb\",\"utf\":\"\\u00e9\\u20ac\\ud83d\\ude00\",\"empty\":\"\",\"lit\":\"\"}");
}

static void test_keys_and_tables(void **state) {
  (void)state;
  expect_json("key = 1\nbare_key = 2\nbare-key = 3\n1234 = 4\n\"127.0.0.1\" = 5\n"
              "\"character encoding\" = 6\n'key2' = 7\n'quoted \"value\"' = 8\n\"\" = 9",
              "{\"key\":1,\"bare_key\":2,\"bare-key\":3,\"1234\":4,\"127.0.0.1\":5,"
              "\"character encoding\":6,\"key2\":7,\"quoted \\\"value\\\"\":8,\"\":9}");
  expect_json("name = \"Orange\"\nphysical.color = \"orange\"\nphysical.shape = \"round\"\n"
              "site.\"google.com\" = true\n3.14159 = \"pi\"\nfruit . flavor = 'x'",
              "{\"name\":\"Orange\",\"physical\":{\"color\":\"orange\",\"shape\":\"round\"},"
              "\"site\":{\"google.com\":true},\"3\":{\"14159\":\"pi\"},\"fruit\":{\"flavor\":\"x\"}}");
  expect_json("[table-1]\nkey1 = \"some string\"\n[table-2]\nkey1 = \"another string\"\n"
              "[dog.\"tater.man\"]\ntype.name = \"pug\"\n[ j . \"ʞ\" . 'l' ]\n",
              "{\"table-1\":{\"key1\":\"some string\"},\"table-2\":{\"key1\":\"another string\"},"
              "\"dog\":{\"tater.man\":{\"type\":{\"name\":\"pug\"}}},\"j\":{\"\\u029e\":{\"l\":{}}}}");
  /* Super-tables may be defined after their sub-tables; sub-tables under dotted tables. */
  expect_json("[x.y.z.w]\n[x]\na = 1\n", "{\"x\":{\"a\":1,\"y\":{\"z\":{\"w\":{}}}}}");
  expect_json("[fruit]\napple.color = \"red\"\napple.taste.sweet = true\n[fruit.apple.texture]\nsmooth = true",
              "{\"fruit\":{\"apple\":{\"color\":\"red\",\"taste\":{\"sweet\":true},\"texture\":{\"smooth\":true}}}}");
  expect_json("[a.b.c]\n[a]\nb.d = 1\n", "{\"a\":{\"b\":{\"c\":{},\"d\":1}}}");
  expect_json("\xEF\xBB\xBF" "a = 1\r\n[b]\r\nc = 2 # comment\r\n", "{\"a\":1,\"b\":{\"c\":2}}");
}

static void test_arrays_and_inline(void **state) {
  (void)state;
  expect_json("integers = [ 1, 2, 3 ]\ncolors = [ \"red\", \"yellow\", \"green\" ]\n"
              "nested = [ [ 1, 2 ], [3, 4, 5] ]\nmixed = [ [ 1, 2 ], [\"a\", \"b\", \"c\"] ]\n"
              "types = [ 0.1, 0.2, 0.5, 1, 2, 5 ]\nempty = []\n"
              "contributors = [\n  \"Foo Bar <foo@example.com>\",\n  # comment\n"
              "  { name = \"Baz Qux\", email = \"bazqux@example.com\", url = \"https://example.com/bazqux\" },\n]",
              "{\"integers\":[1,2,3],\"colors\":[\"red\",\"yellow\",\"green\"],\"nested\":[[1,2],[3,4,5]],"
              "\"mixed\":[[1,2],[\"a\",\"b\",\"c\"]],\"types\":[0.1,0.2,0.5,1,2,5],\"empty\":[],"
              "\"contributors\":[\"Foo Bar <foo@example.com>\",{\"name\":\"Baz Qux\","
              "\"email\":\"bazqux@example.com\",\"url\":\"https://example.com/bazqux\"}]}");
  expect_json("name = { first = \"Tom\", last = \"Preston-Werner\" }\npoint = {x=1,y=2}\n"
              "animal = { type.name = \"pug\" }\nempty = {}",
              "{\"name\":{\"first\":\"Tom\",\"last\":\"Preston-Werner\"},\"point\":{\"x\":1,\"y\":2},"
              "\"animal\":{\"type\":{\"name\":\"pug\"}},\"empty\":{}}");
  expect_json("[[products]]\nname = \"Hammer\"\nsku = 738594937\n\n[[products]]  # empty\n\n"
              "[[products]]\nname = \"Nail\"\ncolor = \"gray\"",
              "{\"products\":[{\"name\":\"Hammer\",\"sku\":738594937},{},{\"name\":\"Nail\",\"color\":\"gray\"}]}");
  expect_json("[[fruits]]\nname = \"apple\"\n[fruits.physical]\ncolor = \"red\"\n"
              "[[fruits.varieties]]\nname = \"red delicious\"\n[[fruits.varieties]]\nname = \"granny smith\"\n"
              "[[fruits]]\nname = \"banana\"\n[[fruits.varieties]]\nname = \"plantain\"",
              "{\"fruits\":[{\"name\":\"apple\",\"physical\":{\"color\":\"red\"},\"varieties\":"
              "[{\"name\":\"red delicious\"},{\"name\":\"granny smith\"}]},"
              "{\"name\":\"banana\",\"varieties\":[{\"name\":\"plantain\"}]}]}");
  expect_json("points = [ { x = 1, y = 2, z = 3 },\n { x = 7, y = 8, z = 9 } ]",
              "{\"points\":[{\"x\":1,\"y\":2,\"z\":3},{\"x\":7,\"y\":8,\"z\":9}]}");
}

/* Trustee KBS configuration shapes (kbs/config and kbs/test_data/configs). */
static void test_kbs_config_shapes(void **state) {
  (void)state;
  expect_json(
      "[http_server]\nsockets = [\"0.0.0.0:8080\"]\ninsecure_http = true\n\n"
      "[attestation_token]\ninsecure_key = false\ntrusted_certs_paths = []\n\n"
      "[attestation_service]\ntype = \"coco_as_builtin\"\n"
      "work_dir = \"/opt/confidential-containers/attestation-service\"\npolicy_engine = \"opa\"\ntimeout = 5\n\n"
      "[attestation_service.attestation_token_broker]\ntype = \"Ear\"\nduration_min = 5\n\n"
      "[attestation_service.rvps_config]\ntype = \"BuiltIn\"\nstore_type = \"LocalFs\"\n\n"
      "[policy_engine]\npolicy_path = \"/opa/confidential-containers/kbs/policy.rego\"\n\n"
      "[admin]\ninsecure_api = true\n\n"
      "[[plugins]]\nname = \"resource\"\ntype = \"LocalFs\"\ndir_path = \"/opt/confidential-containers/kbs/repository\"\n\n"
      "[[plugins]]\nname = \"nebula_ca\"\ntype = \"SelfSigned\"\nconfig_path = \"/etc/self-signed-nebula-ca-config.toml\"\n",
      "{\"http_server\":{\"sockets\":[\"0.0.0.0:8080\"],\"insecure_http\":true},"
      "\"attestation_token\":{\"insecure_key\":false,\"trusted_certs_paths\":[]},"
      "\"attestation_service\":{\"type\":\"coco_as_builtin\","
      "\"work_dir\":\"/opt/confidential-containers/attestation-service\",\"policy_engine\":\"opa\",\"timeout\":5,"
      "\"attestation_token_broker\":{\"type\":\"Ear\",\"duration_min\":5},"
      "\"rvps_config\":{\"type\":\"BuiltIn\",\"store_type\":\"LocalFs\"}},"
      "\"policy_engine\":{\"policy_path\":\"/opa/confidential-containers/kbs/policy.rego\"},"
      "\"admin\":{\"insecure_api\":true},"
      "\"plugins\":[{\"name\":\"resource\",\"type\":\"LocalFs\",\"dir_path\":\"/opt/confidential-containers/kbs/repository\"},"
      "{\"name\":\"nebula_ca\",\"type\":\"SelfSigned\",\"config_path\":\"/etc/self-signed-nebula-ca-config.toml\"}]}");
  expect_json("[http_server]\ninsecure_http = true\n[attestation_service]\ntype = \"coco_as_grpc\"\n"
              "as_addr = \"http://127.0.0.1:50004\"\npool_size = 200\n"
              "[attestation_service.verifier_config.sev_snp]\nvcek_sources = [ { type = \"OfflineDiskCache\" } ]\n",
              "{\"http_server\":{\"insecure_http\":true},\"attestation_service\":{\"type\":\"coco_as_grpc\","
              "\"as_addr\":\"http://127.0.0.1:50004\",\"pool_size\":200,\"verifier_config\":{\"sev_snp\":"
              "{\"vcek_sources\":[{\"type\":\"OfflineDiskCache\"}]}}}}");
}

/* guest-components aa.toml / cdh.toml shapes. */
static void test_guest_config_shapes(void **state) {
  (void)state;
  expect_json("[token_configs]\n[token_configs.coco_as]\nurl = 'http://127.0.0.1:8080'\n\n"
              "[token_configs.kbs]\nurl = \"https://kbs.example:8080\"\ncert = \"\"\"\n"
              "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n\"\"\"\n"
              "[eventlog_config]\neventlog_algorithm = \"sha384\"\ninit_pcr = 17\nenable_eventlog = false\n",
              "{\"token_configs\":{\"coco_as\":{\"url\":\"http://127.0.0.1:8080\"},\"kbs\":{\"url\":"
              "\"https://kbs.example:8080\",\"cert\":\"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n\"}},"
              "\"eventlog_config\":{\"eventlog_algorithm\":\"sha384\",\"init_pcr\":17,\"enable_eventlog\":false}}");
  expect_json("socket = 'unix:///run/confidential-containers/cdh.sock'\ncredentials = []\n\n"
              "[kbc]\nname = 'cc_kbc'\nurl = 'http://127.0.0.1:8080'\nkbs_cert = \"\"\n\n"
              "[image]\nimage_security_policy_uri = 'kbs:///default/security-policy/test'\n"
              "max_concurrent_layer_downloads_per_image = 3\n",
              "{\"socket\":\"unix:///run/confidential-containers/cdh.sock\",\"credentials\":[],"
              "\"kbc\":{\"name\":\"cc_kbc\",\"url\":\"http://127.0.0.1:8080\",\"kbs_cert\":\"\"},"
              "\"image\":{\"image_security_policy_uri\":\"kbs:///default/security-policy/test\","
              "\"max_concurrent_layer_downloads_per_image\":3}}");
  expect_json("[[credentials]]\nresource_uri = \"kbs:///default/credential/test\"\npath = \"/run/cred\"\n",
              "{\"credentials\":[{\"resource_uri\":\"kbs:///default/credential/test\",\"path\":\"/run/cred\"}]}");
}

static void test_errors(void **state) {
  (void)state;
  expect_error("a = 1\na = 2", "duplicate key 'a'");
  expect_error("a = 1\n\"a\" = 2", "duplicate key 'a'");
  expect_error("a.b = 1\na.b = 2", "duplicate key 'a.b'");
  expect_error("a = 1\na.b = 2", "'a' is already a value");
  expect_error("[a]\nb = 1\n[a]\nc = 2", "table redefinition");
  expect_error("[a]\nb = 1\n[a.b]", "already a value");
  expect_error("[a.b]\n[a]\n[a]", "table redefinition");
  expect_error("a = {}\n[a]", "inline table");
  expect_error("a = {b = 1}\n[a.c]", "inline table");
  expect_error("a = {b = 1}\na.c = 2", "inline table");
  expect_error("[fruit]\napple.color = \"red\"\n[fruit.apple]", "defined by dotted keys");
  expect_error("[a.b.c]\nz = 9\n[a]\nb.c.t = 1", "a table defined by a [header]");
  expect_error("[[a]]\n[a]", "array of tables");
  expect_error("[a]\n[[a]]", "is already a table");
  expect_error("a = []\n[[a]]", "static array");
  expect_error("a = [1]\n[a.b]", "already a value");
  expect_error("s = \"\\q\"", "bad escape sequence '\\q'");
  expect_error("s = \"\\u00\"", "bad escape");
  expect_error("s = \"\\uD800\"", "not a Unicode scalar value");
  expect_error("s = \"\\U00110000\"", "not a Unicode scalar value");
  expect_error("s = \"\\u0000\"", "U+0000");
  expect_error("s = \"abc", "unterminated string");
  expect_error("s = \"abc\nd\"", "unterminated string");
  expect_error("s = '''abc", "unterminated string");
  expect_error("s = \"\"\"abc\"\"", "unterminated string");
  expect_error("s = \"a\x01\"", "control character U+0001");
  expect_error("s = 'a\x7f'", "control character U+007F");
  expect_error("# bad \x02 comment", "control character U+0002 in a comment");
  expect_error("s = \"\xc3\x28\"", "invalid UTF-8");
  expect_error("s = \"\xed\xa0\x80\"", "invalid UTF-8");
  expect_error("s = \"\xc0\xaf\"", "invalid UTF-8");
  expect_error("s = \"\xe2\x82", "truncated UTF-8");
  expect_error("a = 012", "leading zeros");
  expect_error("a = 00.5", "leading zeros");
  expect_error("a = 9223372036854775808", "integer overflow");
  expect_error("a = -9223372036854775809", "integer overflow");
  expect_error("a = 0x8000000000000000", "integer overflow");
  expect_error("a = 1__0", "invalid number");
  expect_error("a = _1", "invalid value");
  expect_error("a = 1_", "invalid number");
  expect_error("a = +0x10", "sign is not allowed");
  expect_error("a = 0xG", "bad hexadecimal");
  expect_error("a = 0o8", "bad octal");
  expect_error("a = 0b2", "bad binary");
  expect_error("a = 1.", "decimal point");
  expect_error("a = .5", "invalid value");
  expect_error("a = 1e", "bad exponent");
  expect_error("a = 1e400", "float out of range");
  expect_error("a = inf", "inf and nan");
  expect_error("a = -nan", "inf and nan");
  expect_error("a = 1979-13-01", "out of range");
  expect_error("a = 2001-02-29", "out of range");
  expect_error("a = 1979-05-27T25:00:00", "out of range");
  expect_error("a = 1979-05-27T07:32", "expected HH:MM:SS");
  expect_error("a = 07:32:00Z", "invalid date-time");
  expect_error("a = 1979-05-27T07:32:00+7:00", "offset");
  expect_error("a = hello", "strings must be quoted");
  expect_error("a = truee", "strings must be quoted");
  expect_error("a =", "expected a value");
  expect_error("a = 1 b = 2", "expected a newline after a value");
  expect_error("a", "expected '='");
  expect_error("= 1", "expected a key");
  expect_error("a = [1, 2", "unterminated array");
  expect_error("a = [1 2]", "expected ',' or ']'");
  expect_error("a = [,]", "expected a value");
  expect_error("a = {b = 1,}", "trailing comma");
  expect_error("a = {b = 1\n}", "newlines are not allowed");
  expect_error("[a", "expected ']'");
  expect_error("[[a]", "expected ']]'");
  expect_error("[a] b = 1", "expected a newline after a table header");
  expect_error("\"\"\"k\"\"\" = 1", "multi-line strings cannot be keys");
  expect_error("a = 1\r", "expected a newline");
}

static void test_error_position(void **state) {
  (void)state;
  ct_err err;
  json_t *v = NULL;
  const char *doc = "a = 1\n# ok\n\"\xc3\xa9t\xc3\xa9\" = 2\nb = [1, 2,\n  3 4]\n";
  /* Line 5 column 5 is the '4'. */
  assert_int_equal(toml_parse(doc, strlen(doc), &v, &err), CT_EINVAL);
  assert_string_equal(err.msg, "line 5, column 5: expected ',' or ']' in an array");
  const char *doc2 = "\xc3\xa9 = 1";
  assert_int_equal(toml_parse(doc2, strlen(doc2), &v, &err), CT_EINVAL);
  assert_string_equal(err.msg, "line 1, column 1: expected a key (bare keys are A-Z a-z 0-9 _ -)");
  const char *doc5 = "\"\xc3\xa9\xc3\xa9\" = \"\xc3\xa9\\x\"";
  assert_int_equal(toml_parse(doc5, strlen(doc5), &v, &err), CT_EINVAL);
  assert_string_equal(err.msg, "line 1, column 10: bad escape sequence '\\x'");
  /* Not NUL-terminated: only len bytes are read. */
  const char doc3[] = {'a', '=', '1', '2', 'x'};
  CT_ASSERT_OK(toml_parse(doc3, 4, &v, &err), &err);
  assert_int_equal(json_integer_value(json_object_get(v, "a")), 12);
  json_decref(v);
  const char doc4[] = "a = \"x\0y\"";
  assert_int_equal(toml_parse(doc4, sizeof doc4 - 1, &v, &err), CT_EINVAL);
  assert_non_null(strstr(err.msg, "control character U+0000"));
}

static void test_limits(void **state) {
  (void)state;
  ct_err err;
  json_t *v = NULL;
  char buf[1024];
  /* Array nesting: 63 arrays under the root are fine, 64 are too deep. */
  for (int depth = 62; depth <= 64; depth++) {
    size_t n = 0;
    n += (size_t)snprintf(buf, sizeof buf, "a = ");
    for (int i = 0; i < depth; i++) buf[n++] = '[';
    for (int i = 0; i < depth; i++) buf[n++] = ']';
    buf[n] = '\0';
    ct_status st = toml_parse(buf, n, &v, &err);
    if (depth <= 63) {
      CT_ASSERT_OK(st, &err);
      json_decref(v);
    } else {
      assert_int_equal(st, CT_ELIMIT);
      assert_non_null(strstr(err.msg, "nesting deeper than 64"));
    }
  }
  /* Inline tables and dotted keys count too. */
  size_t n = (size_t)snprintf(buf, sizeof buf, "a = ");
  for (int i = 0; i < 70; i++) n += (size_t)snprintf(buf + n, sizeof buf - n, "{b=");
  buf[n++] = '1';
  for (int i = 0; i < 70; i++) buf[n++] = '}';
  assert_int_equal(toml_parse(buf, n, &v, &err), CT_ELIMIT);
  n = 0;
  for (int i = 0; i < 70; i++) n += (size_t)snprintf(buf + n, sizeof buf - n, "%sk", i ? "." : "");
  n += (size_t)snprintf(buf + n, sizeof buf - n, " = 1");
  assert_int_equal(toml_parse(buf, n, &v, &err), CT_ELIMIT);
  n = 0;
  buf[n++] = '[';
  for (int i = 0; i < 64; i++) n += (size_t)snprintf(buf + n, sizeof buf - n, "%sk", i ? "." : "");
  buf[n++] = ']';
  assert_int_equal(toml_parse(buf, n, &v, &err), CT_ELIMIT);
  assert_non_null(strstr(err.msg, "nesting deeper"));
  /* Deep headers within the bound work. */
  n = (size_t)snprintf(buf, sizeof buf, "[a.b.c.d.e.f.g.h]\nx = 1\n[[a.b.l]]\n[[a.b.l]]\ny = 2");
  CT_ASSERT_OK(toml_parse(buf, n, &v, &err), &err);
  json_decref(v);
}

static void test_parse_file(void **state) {
  (void)state;
  char path[] = "/tmp/toml_test_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  const char *doc = "[kbc]\nname = \"cc_kbc\"\n";
  assert_int_equal(write(fd, doc, strlen(doc)), (ssize_t)strlen(doc));
  close(fd);
  ct_err err;
  json_t *v = NULL;
  CT_ASSERT_OK(toml_parse_file(path, &v, &err), &err);
  assert_string_equal(json_string_value(json_object_get(json_object_get(v, "kbc"), "name")), "cc_kbc");
  json_decref(v);
  FILE *f = fopen(path, "w");
  fputs("a = [\n", f);
  fclose(f);
  assert_int_equal(toml_parse_file(path, &v, &err), CT_EINVAL);
  assert_non_null(strstr(err.msg, path));
  assert_non_null(strstr(err.msg, "unterminated array"));
  unlink(path);
  assert_int_not_equal(toml_parse_file("/nonexistent/x.toml", &v, &err), CT_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_scalars),          cmocka_unit_test(test_strings),
      cmocka_unit_test(test_keys_and_tables),  cmocka_unit_test(test_arrays_and_inline),
      cmocka_unit_test(test_kbs_config_shapes), cmocka_unit_test(test_guest_config_shapes),
      cmocka_unit_test(test_errors),           cmocka_unit_test(test_error_position),
      cmocka_unit_test(test_limits),           cmocka_unit_test(test_parse_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
