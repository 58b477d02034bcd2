/*
 * coco_initdata.c - `coco initdata ...`: the pattern's init-data document.
 *
 *   render          the pattern's template (aa.toml, cdh.toml, policy.rego) for one KBS
 *   encode/decode   the pod annotation io.katacontainers.config.hypervisor.cc_init_data
 *   digest / pcr8   the values the TEE binds (HOST_DATA / MRCONFIGID / vTPM PCR8)
 *   check           what the pattern's admission check validates, plus what breaks at run time
 *   explain-policy  would the kata agent allow this request, and which rule decided
 */
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coco.h"
#include "ct_buf.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_json.h"
#include "ct_mem.h"
#include "ct_policies.h"
#include "initdata.h"
#include "rego.h"
#include "toml.h"

#define COCO__CERT_MAX (64u << 10)
#define COCO__POLICY_MAX (512u << 10)
#define COCO__URL_MAX 2048
#define COCO__MAX_ARGS 256

static int coco__initdata_usage(void) {
  fprintf(stderr,
          "usage: coco initdata render --kbs-url URL [--kbs-cert PEM] [--agent-policy FILE | --permissive]\n"
          "                            [--image-policy insecure|reject|signed] [-o FILE]\n"
          "       coco initdata encode FILE          base64(gzip(FILE)) for the cc_init_data annotation\n"
          "       coco initdata decode FILE|-        the TOML inside an annotation value\n"
          "       coco initdata digest FILE          algorithm(FILE bytes), lower-case hex\n"
          "       coco initdata pcr8 FILE            sha256(32 zero bytes || sha256(FILE)), lower-case hex\n"
          "       coco initdata check FILE           exit 0 ok, 3 refused (every failed check is listed)\n"
          "       coco initdata explain-policy FILE --request NAME [--args \"CMD ARG...\"] [--input REQUEST.json]\n"
          "                                          [--json]   exit 0 allowed, 3 denied\n"
          "FILE may be the TOML or an annotation value (base64 of gzip).\n");
  return 2;
}

/* --- loading ---------------------------------------------------------------------------------- */

/* Annotation values are base64 of gzip, which always starts "H4sI". */
static bool coco__looks_like_annotation(const char *t, size_t len) {
  while (len && strchr(" \t\r\n", *t)) t++, len--;
  return len >= 4 && !memcmp(t, "H4sI", 4);
}

/* Reads init-data from a file holding the TOML or its annotation form. *text is the TOML. */
static CT_RESULT coco__load_initdata(const char *path, char **text, size_t *len, initdata **d, ct_err *err) {
  char *raw = NULL;
  size_t raw_len = 0;
  CT_GUARD(coco_read(path, COCO_FILE_MAX, &raw, &raw_len, err));
  if (coco__looks_like_annotation(raw, raw_len)) {
    char *toml = NULL;
    size_t tl = 0;
    ct_status st = initdata_decode_annotation(raw, &toml, &tl, err);
    free(raw);
    if (st) return ct_err_prefix(err, "%s: ", path);
    raw = toml;
    raw_len = tl;
  }
  if (d) {
    ct_status st = initdata_parse(raw, raw_len, d, err);
    if (st) {
      free(raw);
      return ct_err_prefix(err, "%s: ", path);
    }
  }
  *text = raw;
  *len = raw_len;
  return CT_OK;
}

static CT_RESULT coco__hex_line(const uint8_t *b, size_t n, ct_err *err) {
  char hex[2 * 64 + 2];
  ct_hex_into(b, n, hex);
  size_t l = strlen(hex);
  hex[l] = '\n';
  return coco_write(NULL, hex, l + 1, 0, err);
}

/* --- render ----------------------------------------------------------------------------------- */

/* Characters that would end or change the TOML strings the values are embedded in. */
static CT_RESULT coco__check_embeddable(const char *what, const char *s, size_t len, bool basic, ct_err *err) {
  CT_ENSURE(!memmem(s, len, "'''", 3), err, CT_EINVAL, "%s contains ''' (it is embedded in a TOML literal string)",
            what);
  if (basic) {
    CT_ENSURE(!memmem(s, len, "\"\"\"", 3) && !memchr(s, '\\', len), err, CT_EINVAL,
              "%s contains \"\"\" or a backslash (it is embedded in a TOML multi-line string)", what);
  }
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    CT_ENSURE(c >= 0x20 || c == '\n' || c == '\t' || (c == '\r' && i + 1 < len && s[i + 1] == '\n'), err,
              CT_EINVAL, "%s contains control character 0x%02x at byte %zu", what, c, i);
    CT_ENSURE(c != 0x7f, err, CT_EINVAL, "%s contains DEL at byte %zu", what, i);
  }
  return CT_OK;
}

static CT_RESULT coco__check_url(const char *url, ct_err *err) {
  size_t n = strnlen(url, COCO__URL_MAX + 1);
  CT_ENSURE(n <= COCO__URL_MAX, err, CT_ELIMIT, "--kbs-url is longer than %u bytes", COCO__URL_MAX);
  CT_ENSURE(!strncmp(url, "https://", 8) || !strncmp(url, "http://", 7), err, CT_EINVAL,
            "--kbs-url \"%.64s\" must start with https:// or http://", url);
  const char *host = url + (url[4] == 's' ? 8 : 7);
  CT_ENSURE(*host && *host != '/', err, CT_EINVAL, "--kbs-url \"%.64s\" has no host", url);
  for (const char *p = url; *p; p++)
    CT_ENSURE((unsigned char)*p > 0x20 && *p != '"' && *p != '\'' && *p != '\\' && (unsigned char)*p < 0x7f, err,
              CT_EINVAL, "--kbs-url contains a character not allowed in a URL here (0x%02x)", (unsigned char)*p);
  return CT_OK;
}

/* The KBS certificate: PEM holding at least one X.509 certificate (the guest pins it). */
static CT_RESULT coco__check_cert(const char *pem, size_t len, ct_err *err) {
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  CT_ENSURE(bio, err, CT_ENOMEM, "out of memory");
  X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
  BIO_free(bio);
  if (!x) return ct_fail_ossl(err, CT_EINVAL, "--kbs-cert is not a PEM X.509 certificate");
  X509_free(x);
  return CT_OK;
}

static CT_RESULT coco__compile_agent_policy(const char *name, const char *text, rego_policy **p, ct_err *err) {
  rego_module m = {name, text};
  ct_status st = rego_compile(&m, 1, NULL, p, err);
  if (st) return ct_err_prefix(err, "agent policy: ");
  return CT_OK;
}

typedef struct coco__render_args {
  const char *url, *cert_file, *policy_file, *flavour, *out;
  bool permissive;
} coco__render_args;

static CT_RESULT coco__render(const coco__render_args *a, ct_buf *out, ct_err *err) {
  CT_GUARD(coco__check_url(a->url, err));
  static const char *const flavours[] = {"insecure", "reject", "signed"};
  bool known = false;
  for (size_t i = 0; i < 3; i++) known = known || !strcmp(a->flavour, flavours[i]);
  CT_ENSURE(known, err, CT_EINVAL, "--image-policy \"%.32s\" is not insecure, reject or signed", a->flavour);
  CT_ENSURE(a->cert_file || !strncmp(a->url, "http://", 7), err, CT_EINVAL,
            "--kbs-cert is required for an https KBS URL (the guest pins the KBS certificate)");
  char *cert = NULL, *policy = NULL;
  size_t cert_len = 0, policy_len = 0;
  ct_status st = CT_OK;
  if (a->cert_file) {
    CT_GUARD_GOTO(st, coco_read(a->cert_file, COCO__CERT_MAX, &cert, &cert_len, err), out);
    while (cert_len && strchr(" \t\r\n", cert[cert_len - 1])) cert[--cert_len] = '\0';
    CT_GUARD_GOTO(st, coco__check_cert(cert, cert_len, err), out);
    CT_GUARD_GOTO(st, coco__check_embeddable("--kbs-cert", cert, cert_len, true, err), out);
  }
  if (a->policy_file) {
    CT_GUARD_GOTO(st, coco_read(a->policy_file, COCO__POLICY_MAX, &policy, &policy_len, err), out);
  } else {
    const char *builtin = a->permissive ? ct_policy_agent_permissive : ct_policy_agent_default;
    CT_GUARD_GOTO(st, ct_strdup(builtin, &policy, err), out);
    policy_len = strlen(policy);
  }
  CT_ENSURE_GOTO(st, strlen(policy) == policy_len, out, err, CT_EINVAL, "agent policy contains a NUL byte");
  CT_GUARD_GOTO(st, coco__check_embeddable("agent policy", policy, policy_len, false, err), out);
  rego_policy *rp = NULL;
  CT_GUARD_GOTO(st, coco__compile_agent_policy(a->policy_file ? a->policy_file : "policy.rego", policy, &rp, err),
                out);
  rego_policy_free(rp);

  /* The pattern's template (initdata-default.toml.tpl): the AA and the CDH both pin the KBS. */
  const char *nl = policy_len && policy[policy_len - 1] == '\n' ? "" : "\n";
  CT_GUARD_GOTO(st,
                ct_buf_printf(out, err,
                              "algorithm = \"sha256\"\n"
                              "version = \"0.1.0\"\n"
                              "\n"
                              "[data]\n"
                              "\"aa.toml\" = '''\n"
                              "[token_configs]\n"
                              "[token_configs.coco_as]\n"
                              "url = \"%s\"\n"
                              "\n"
                              "[token_configs.kbs]\n"
                              "url = \"%s\"\n",
                              a->url, a->url),
                out);
  if (cert) CT_GUARD_GOTO(st, ct_buf_printf(out, err, "cert = \"\"\"%s\n\"\"\"\n", cert), out);
  CT_GUARD_GOTO(st,
                ct_buf_printf(out, err,
                              "'''\n"
                              "\n"
                              "\"cdh.toml\" = '''\n"
                              "socket = 'unix:///run/confidential-containers/cdh.sock'\n"
                              "credentials = []\n"
                              "\n"
                              "[kbc]\n"
                              "name = \"cc_kbc\"\n"
                              "url = \"%s\"\n",
                              a->url),
                out);
  if (cert) CT_GUARD_GOTO(st, ct_buf_printf(out, err, "kbs_cert = \"\"\"%s\n\"\"\"\n", cert), out);
  CT_GUARD_GOTO(st,
                ct_buf_printf(out, err,
                              "\n"
                              "[image]\n"
                              "image_security_policy_uri = 'kbs:///default/security-policy/%s'\n"
                              "'''\n"
                              "\n"
                              "\"policy.rego\" = '''\n",
                              a->flavour),
                out);
  CT_GUARD_GOTO(st, ct_buf_append(out, policy, policy_len, err), out);
  CT_GUARD_GOTO(st, ct_buf_printf(out, err, "%s'''\n", nl), out);
  /* Self-check: the document parses, and the values come back out exactly as given. */
  initdata *d = NULL;
  CT_GUARD_GOTO(st, initdata_parse((const char *)out->data, out->len, &d, err), selfcheck);
  json_t *claims = NULL;
  st = initdata_claims(d, &claims, err);
  if (!st) {
    json_t *aa = json_object_get(claims, "aa.toml"), *cdh = json_object_get(claims, "cdh.toml");
    const char *aa_url = json_string_value(json_object_get(json_object_get(json_object_get(aa, "token_configs"), "kbs"), "url"));
    const char *aa_cert = json_string_value(json_object_get(json_object_get(json_object_get(aa, "token_configs"), "kbs"), "cert"));
    const char *cdh_url = json_string_value(json_object_get(json_object_get(cdh, "kbc"), "url"));
    const char *cdh_cert = json_string_value(json_object_get(json_object_get(cdh, "kbc"), "kbs_cert"));
    const char *pol = json_string_value(json_object_get(d->data, "policy.rego"));
    /* The TOML strings end with the newline the template puts before the closing quotes. */
    bool cert_ok = !cert || (aa_cert && cdh_cert && strlen(aa_cert) == cert_len + 1 && !strncmp(aa_cert, cert, cert_len) &&
                             !strcmp(aa_cert, cdh_cert));
    bool ok = aa_url && cdh_url && !strcmp(aa_url, a->url) && !strcmp(cdh_url, a->url) && pol &&
              !strncmp(pol, policy, policy_len) &&
              cert_ok;
    if (!ok) st = ct_fail(err, CT_EINTERNAL, "rendered init-data does not carry the given values back");
  }
  json_decref(claims);
  initdata_free(d);
selfcheck:
  if (st) ct_err_prefix(err, "rendered init-data: ");
out:
  free(cert);
  free(policy);
  return st;
}

static int coco__cmd_render(int argc, char **argv) {
  coco__render_args a = {.flavour = "insecure"};
  bool bad = false;
  for (int i = 0; i < argc && !bad; i++) {
    if (coco_opt(argc, argv, &i, "--kbs-url", &a.url, &bad) || coco_opt(argc, argv, &i, "--kbs-cert", &a.cert_file, &bad) ||
        coco_opt(argc, argv, &i, "--agent-policy", &a.policy_file, &bad) ||
        coco_opt(argc, argv, &i, "--image-policy", &a.flavour, &bad) || coco_opt(argc, argv, &i, "-o", &a.out, &bad))
      continue;
    if (!strcmp(argv[i], "--permissive")) {
      a.permissive = true;
      continue;
    }
    fprintf(stderr, "coco: initdata render: unknown argument %s\n", argv[i]);
    bad = true;
  }
  if (bad || !a.url) return coco__initdata_usage();
  if (a.permissive && a.policy_file) {
    fprintf(stderr, "coco: initdata render: --permissive and --agent-policy exclude each other\n");
    return 2;
  }
  ct_buf out;
  ct_buf_init(&out, INITDATA_MAX_SIZE);
  ct_err err = {0};
  ct_status st = coco__render(&a, &out, &err);
  if (!st) st = coco_write(a.out, out.data, out.len, 0644, &err);
  ct_buf_free(&out);
  return st ? coco_fail("initdata render", &err) : 0;
}

/* --- encode / decode / digest / pcr8 ---------------------------------------------------------- */

static int coco__cmd_simple(const char *verb, const char *path) {
  ct_err err = {0};
  char *text = NULL;
  size_t len = 0;
  initdata *d = NULL;
  char what[64];
  snprintf(what, sizeof what, "initdata %s", verb);
  ct_status st;
  if (!strcmp(verb, "decode")) {
    char *raw = NULL;
    size_t raw_len = 0;
    st = coco_read(path, COCO_FILE_MAX, &raw, &raw_len, &err);
    if (!st) st = initdata_decode_annotation(raw, &text, &len, &err);
    free(raw);
    if (!st) st = coco_write(NULL, text, len, 0, &err);
    free(text);
    return st ? coco_fail(what, &err) : 0;
  }
  /* encode takes the TOML itself; the others also accept the annotation form. */
  if (!strcmp(verb, "encode")) {
    st = coco_read(path, COCO_FILE_MAX, &text, &len, &err);
    if (!st && (st = initdata_parse(text, len, &d, &err)) != CT_OK) ct_err_prefix(&err, "%s: ", path);
  } else {
    st = coco__load_initdata(path, &text, &len, &d, &err);
  }
  if (!st) {
    if (!strcmp(verb, "encode")) {
      char *b64 = NULL;
      st = initdata_encode_annotation(text, len, &b64, &err);
      if (!st) {
        size_t bl = strlen(b64);
        b64[bl] = '\0';
        st = coco_write(NULL, b64, bl, 0, &err);
        if (!st) st = coco_write(NULL, "\n", 1, 0, &err);
      }
      free(b64);
    } else if (!strcmp(verb, "digest")) {
      st = coco__hex_line(d->digest, d->digest_len, &err);
    } else {
      uint8_t pcr8[32];
      st = initdata_pcr8(d->digest, d->digest_len, pcr8, &err);
      if (!st) st = coco__hex_line(pcr8, sizeof pcr8, &err);
    }
  }
  initdata_free(d);
  free(text);
  return st ? coco_fail(what, &err) : 0;
}

/* --- check ------------------------------------------------------------------------------------ */

typedef struct coco__report {
  ct_buf lines;
  unsigned failed;
} coco__report;

static void coco__note(coco__report *r, bool ok, const char *item, const char *fmt, ...) CT_PRINTF(4, 5);
static void coco__note(coco__report *r, bool ok, const char *item, const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  ct_err ignored;
  if (ct_buf_printf(&r->lines, &ignored, "  %-12s %s %s\n", item, ok ? "ok     " : "REFUSED", msg) != CT_OK)
    r->failed++;
  if (!ok) r->failed++;
}

/* A data entry that must parse as TOML; returns the parsed document or NULL (noted). */
static json_t *coco__check_toml_entry(coco__report *r, const json_t *data, const char *name) {
  json_t *s = json_object_get(data, name);
  if (!json_is_string(s)) {
    coco__note(r, false, name, "missing: the pattern's admission check requires data.\"%s\"", name);
    return NULL;
  }
  json_t *doc = NULL;
  ct_err e = {0};
  if (toml_parse(json_string_value(s), json_string_length(s), &doc, &e) != CT_OK) {
    coco__note(r, false, name, "does not parse as TOML: %s", e.msg);
    return NULL;
  }
  return doc;
}

static const char *coco__jstr(const json_t *o, const char *a, const char *b, const char *c) {
  const json_t *v = json_object_get(o, a);
  if (b) v = json_object_get(v, b);
  if (c) v = json_object_get(v, c);
  return json_string_value(v);
}

static void coco__check_cert_value(coco__report *r, const char *item, const char *pem) {
  if (!pem) return;
  ct_err e = {0};
  if (coco__check_cert(pem, strlen(pem), &e) != CT_OK)
    coco__note(r, false, item, "the KBS certificate does not parse: %s", e.msg);
}

static int coco__cmd_check(const char *path) {
  ct_err err = {0};
  char *raw = NULL;
  size_t raw_len = 0;
  if (coco__load_initdata(path, &raw, &raw_len, NULL, &err)) return coco_fail("initdata check", &err);
  coco__report r = {0};
  ct_buf_init(&r.lines, 1u << 20);
  json_t *doc = NULL;
  if (raw_len > INITDATA_MAX_SIZE) {
    coco__note(&r, false, "size", "%zu bytes, over the %u-byte init-data limit", raw_len, INITDATA_MAX_SIZE);
    goto done;
  }
  if (toml_parse(raw, raw_len, &doc, &err) != CT_OK) {
    coco__note(&r, false, "toml", "%s", err.msg);
    goto done;
  }
  /* Each check on its own, so one report lists every problem. */
  const json_t *ver = json_object_get(doc, "version"), *alg = json_object_get(doc, "algorithm");
  coco__note(&r, json_is_string(ver), "version", "%s", json_is_string(ver) ? json_string_value(ver) : "missing (must be a string)");
  const char *alg_name = json_string_value(alg);
  uint8_t digest[CT_DIGEST_MAX];
  size_t digest_len = 0;
  bool alg_ok = alg_name && (!strcmp(alg_name, "sha256") || !strcmp(alg_name, "sha384") || !strcmp(alg_name, "sha512")) &&
                ct_digest(alg_name, raw, raw_len, digest, &digest_len, &err) == CT_OK;
  coco__note(&r, alg_ok, "algorithm", "%s%s", alg_name ? alg_name : "missing", alg_ok ? "" : " (must be sha256, sha384 or sha512)");
  const json_t *data = json_object_get(doc, "data");
  if (!json_is_object(data)) {
    coco__note(&r, false, "data", "missing [data] table");
    goto done;
  }
  const char *key;
  json_t *val;
  json_object_foreach((json_t *)data, key, val) {
    if (!json_is_string(val)) coco__note(&r, false, "data", "entry \"%.64s\" is not a string", key);
  }
  json_t *aa = coco__check_toml_entry(&r, data, "aa.toml");
  json_t *cdh = coco__check_toml_entry(&r, data, "cdh.toml");
  const char *aa_url = aa ? coco__jstr(aa, "token_configs", "kbs", "url") : NULL;
  const char *cdh_url = cdh ? coco__jstr(cdh, "kbc", "url", NULL) : NULL;
  if (aa) {
    if (aa_url) coco__note(&r, true, "aa.toml", "KBS %s", aa_url);
    else coco__note(&r, false, "aa.toml", "no [token_configs.kbs] url: the attestation agent has no KBS");
    coco__check_cert_value(&r, "aa.toml", coco__jstr(aa, "token_configs", "kbs", "cert"));
  }
  if (cdh) {
    const char *name = coco__jstr(cdh, "kbc", "name", NULL);
    const char *img = coco__jstr(cdh, "image", "image_security_policy_uri", NULL);
    if (!cdh_url) coco__note(&r, false, "cdh.toml", "no [kbc] url: the data hub has no KBS");
    else if (name && strcmp(name, "cc_kbc") != 0) coco__note(&r, false, "cdh.toml", "[kbc] name \"%s\" is not cc_kbc", name);
    else coco__note(&r, true, "cdh.toml", "KBS %s, image policy %s", cdh_url, img ? img : "(none)");
    coco__check_cert_value(&r, "cdh.toml", coco__jstr(cdh, "kbc", "kbs_cert", NULL));
  }
  if (aa_url && cdh_url && strcmp(aa_url, cdh_url) != 0)
    coco__note(&r, false, "kbs", "aa.toml and cdh.toml name different KBS URLs (%s, %s)", aa_url, cdh_url);
  json_decref(aa);
  json_decref(cdh);
  json_t *pol = json_object_get(data, "policy.rego");
  if (!json_is_string(pol)) {
    coco__note(&r, false, "policy.rego", "missing: the pattern's admission check requires data.\"policy.rego\"");
  } else {
    rego_policy *rp = NULL;
    ct_err e = {0};
    if (coco__compile_agent_policy("policy.rego", json_string_value(pol), &rp, &e) != CT_OK) {
      coco__note(&r, false, "policy.rego", "%s", e.msg);
    } else {
      json_t *exec = NULL;
      rego_decision why;
      json_t *in = json_pack("{s:{s:[]}}", "process", "Args");
      ct_status es = rego_eval_decision(rp, "data.agent_policy.ExecProcessRequest", in, NULL, &exec, &why, &e);
      json_decref(in);
      if (es == CT_ENOTFOUND)
        coco__note(&r, false, "policy.rego", "defines no data.agent_policy.ExecProcessRequest: the agent refuses "
                                             "every request the policy does not define (package agent_policy?)");
      else if (es)
        coco__note(&r, false, "policy.rego", "%s", e.msg);
      else
        coco__note(&r, true, "policy.rego", "package agent_policy; exec without an allowed command: %s",
                   json_is_true(exec) ? "ALLOWED (permissive policy)" : "denied");
      json_decref(exec);
      rego_policy_free(rp);
    }
  }
  if (alg_ok) {
    char hex[2 * CT_DIGEST_MAX + 1];
    ct_hex_into(digest, digest_len, hex);
    coco__note(&r, true, "digest", "%s:%s", alg_name, hex);
    uint8_t pcr8[32];
    if (initdata_pcr8(digest, digest_len, pcr8, &err) == CT_OK) {
      ct_hex_into(pcr8, 32, hex);
      coco__note(&r, true, "pcr8", "%s", hex);
    } else {
      /* Not an admission failure: SNP/TDX bind any digest; only the vTPM PCR8 needs sha256. */
      ct_err ignored;
      if (ct_buf_printf(&r.lines, &ignored, "  %-12s note    no PCR8 value: Azure vTPM and TPM guests need "
                        "algorithm = \"sha256\"\n", "pcr8") != CT_OK)
        r.failed++;
    }
  }
done:
  json_decref(doc);
  free(raw);
  printf("%s: %s\n%s", path, r.failed ? "refused" : "ok", r.lines.data ? (char *)r.lines.data : "");
  ct_buf_free(&r.lines);
  return r.failed ? 3 : 0;
}

/* --- explain-policy --------------------------------------------------------------------------- */

/* Splits a command line like a POSIX shell does for plain words and quotes (no expansion). */
static CT_RESULT coco__split_args(const char *s, json_t *arr, ct_err *err) {
  size_t n = strnlen(s, 65537);
  CT_ENSURE(n <= 65536, err, CT_ELIMIT, "--args is longer than 64 KiB");
  char *word = malloc(n + 1);
  CT_ENSURE(word, err, CT_ENOMEM, "out of memory");
  ct_status st = CT_OK;
  size_t i = 0;
  while (st == CT_OK) {
    while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') i++;
    if (!s[i]) break;
    size_t w = 0;
    while (s[i] && s[i] != ' ' && s[i] != '\t' && s[i] != '\n') {
      char c = s[i++];
      if (c == '\'') {
        while (s[i] && s[i] != '\'') word[w++] = s[i++];
        if (!s[i]) st = ct_fail(err, CT_EINVAL, "--args: unterminated single quote");
        else i++;
      } else if (c == '"') {
        while (s[i] && s[i] != '"') {
          if (s[i] == '\\' && s[i + 1] && strchr("\"\\$`", s[i + 1])) i++;
          word[w++] = s[i++];
        }
        if (!s[i]) st = ct_fail(err, CT_EINVAL, "--args: unterminated double quote");
        else i++;
      } else if (c == '\\' && s[i]) {
        word[w++] = s[i++];
      } else {
        word[w++] = c;
      }
      if (st) break;
    }
    if (st) break;
    if (json_array_size(arr) >= COCO__MAX_ARGS) {
      st = ct_fail(err, CT_ELIMIT, "--args has more than %d words", COCO__MAX_ARGS);
      break;
    }
    if (json_array_append_new(arr, json_stringn(word, w)) != 0)
      st = ct_fail(err, CT_EINVAL, "--args: word %zu is not valid UTF-8", json_array_size(arr) + 1);
  }
  free(word);
  return st;
}

/* The JSON the kata agent hands its policy for `oc exec POD -- ARGS...`: the ttRPC
 * ExecProcessRequest as serde serialises it (OCI process members capitalised). */
static CT_RESULT coco__exec_input(const char *args, json_t **out, ct_err *err) {
  json_t *argv = json_array();
  CT_ENSURE(argv, err, CT_ENOMEM, "out of memory");
  ct_status st = coco__split_args(args, argv, err);
  if (st) {
    json_decref(argv);
    return st;
  }
  json_t *in = json_pack("{s:s, s:s, s:n, s:{s:b, s:n, s:{s:i, s:i, s:[], s:s}, s:o, s:[], s:s, s:n, s:[], s:b, s:s, "
                         "s:i, s:s}}",
                         "container_id", "", "exec_id", "", "string_user", "process", "Terminal", 0, "ConsoleSize",
                         "User", "UID", 0, "GID", 0, "AdditionalGids", "Username", "", "Args", argv, "Env", "Cwd", "",
                         "Capabilities", "Rlimits", "NoNewPrivileges", 0, "ApparmorProfile", "", "OOMScoreAdj", 0,
                         "SelinuxLabel", "");
  CT_ENSURE(in, err, CT_ENOMEM, "out of memory");
  *out = in;
  return CT_OK;
}

/* Line `row` (1-based) of `text`, trimmed, into buf. */
static void coco__source_line(const char *text, int row, char *buf, size_t cap) {
  buf[0] = '\0';
  const char *p = text;
  for (int r = 1; p && r < row; r++) {
    p = strchr(p, '\n');
    if (p) p++;
  }
  if (!p || row < 1) return;
  while (*p == ' ' || *p == '\t') p++;
  size_t n = strcspn(p, "\n");
  while (n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r')) n--;
  snprintf(buf, cap, "%.*s", (int)(n < cap - 1 ? n : cap - 1), p);
}

static bool coco__valid_request_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 64) return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
      return false;
  return true;
}

static int coco__cmd_explain(int argc, char **argv) {
  const char *file = NULL, *request = NULL, *args = NULL, *input_file = NULL;
  bool json_out = false, bad = false;
  for (int i = 0; i < argc && !bad; i++) {
    if (coco_opt(argc, argv, &i, "--request", &request, &bad) || coco_opt(argc, argv, &i, "--args", &args, &bad) ||
        coco_opt(argc, argv, &i, "--input", &input_file, &bad))
      continue;
    if (!strcmp(argv[i], "--json")) json_out = true;
    else if (argv[i][0] != '-' && !file) file = argv[i];
    else {
      fprintf(stderr, "coco: initdata explain-policy: unexpected argument %s\n", argv[i]);
      bad = true;
    }
  }
  if (bad || !file || !request) return coco__initdata_usage();
  if (!coco__valid_request_name(request)) {
    fprintf(stderr, "coco: initdata explain-policy: --request \"%.64s\" is not an agent request name\n", request);
    return 2;
  }
  if (args && input_file) {
    fprintf(stderr, "coco: initdata explain-policy: --args and --input exclude each other\n");
    return 2;
  }
  if (args && strcmp(request, "ExecProcessRequest") != 0) {
    fprintf(stderr, "coco: initdata explain-policy: --args describes an ExecProcessRequest\n");
    return 2;
  }
  ct_err err = {0};
  char *text = NULL, *policy = NULL;
  size_t len = 0;
  json_t *input = NULL, *value = NULL, *fail_ok = NULL;
  rego_policy *p = NULL;
  int rc = 1;
  const char *what = "initdata explain-policy";
  /* FILE is init-data (TOML or annotation) holding "policy.rego", or the Rego itself. */
  if (coco_read(file, COCO_FILE_MAX, &text, &len, &err)) goto fail;
  {
    bool is_rego = !coco__looks_like_annotation(text, len) &&
                   (!strncmp(text, "package ", 8) || memmem(text, len, "\npackage ", 9));
    free(text);
    text = NULL;
    initdata *d = NULL;
    ct_err id_err = {0};
    if (coco__load_initdata(file, &text, &len, &d, &id_err) == CT_OK) {
      const char *pol = json_string_value(json_object_get(d->data, "policy.rego"));
      ct_status st = pol ? ct_strdup(pol, &policy, &err)
                         : ct_fail(&err, CT_EINVAL, "%s: init-data has no \"policy.rego\" entry", file);
      initdata_free(d);
      if (st) goto fail;
    } else if (is_rego) {
      if (coco_read(file, COCO_FILE_MAX, &policy, &len, &err)) goto fail;
    } else {
      err = id_err;
      goto fail;
    }
  }
  if (coco__compile_agent_policy("policy.rego", policy, &p, &err)) goto fail;
  if (input_file) {
    char *it = NULL;
    size_t il = 0;
    if (coco_read(input_file, COCO_FILE_MAX, &it, &il, &err)) goto fail;
    ct_status st = ct_json_parse(it, il, CT_JSON_DEFAULT_MAX_DEPTH, &input, &err);
    free(it);
    if (st) {
      ct_err_prefix(&err, "%s: ", input_file);
      goto fail;
    }
  } else if (!strcmp(request, "ExecProcessRequest")) {
    if (coco__exec_input(args ? args : "", &input, &err)) goto fail;
  } else {
    input = json_object();
  }
  char ref[128];
  snprintf(ref, sizeof ref, "data.agent_policy.%s", request);
  rego_decision why;
  ct_status st = rego_eval_decision(p, ref, input, NULL, &value, &why, &err);
  if (st && st != CT_ENOTFOUND) goto fail;
  bool defined = st == CT_OK && value != NULL;
  bool allowed = json_is_true(value);
  /* The kata agent lets a refused request through when the policy sets this (a debug switch of
   * genpolicy's rules). */
  bool failing_ok = false;
  rego_decision why2;
  if (!allowed && rego_eval_decision(p, "data.agent_policy.AllowRequestsFailingPolicy", input, NULL, &fail_ok, &why2,
                                     &err) == CT_OK)
    failing_ok = json_is_true(fail_ok);
  char line[256] = "";
  if (defined) coco__source_line(policy, why.row, line, sizeof line);
  const char *verdict = allowed || failing_ok ? "allowed" : "denied";
  if (json_out) {
    json_t *o = json_pack("{s:s, s:O, s:b, s:O?, s:b}", "request", request, "input", input, "allowed",
                          allowed || failing_ok, "value", value, "allow_requests_failing_policy", failing_ok);
    if (o && defined)
      json_object_set_new(o, "decided_by", json_pack("{s:s, s:i, s:i, s:b, s:s, s:I}", "file", why.file, "row", why.row,
                                                   "col", why.col, "default", why.by_default, "source", line,
                                                   "definitions", (json_int_t)why.definitions));
    char *s = NULL;
    if (!o || ct_json_dump(o, &s, &err)) {
      json_decref(o);
      if (!o) ct_fail(&err, CT_ENOMEM, "out of memory");
      goto fail;
    }
    printf("%s\n", s);
    free(s);
    json_decref(o);
  } else {
    char *argtxt = NULL;
    json_t *a = json_object_get(json_object_get(input, "process"), "Args");
    if (a && ct_json_dump(a, &argtxt, &err)) goto fail;
    printf("%s%s%s: %s\n", request, argtxt ? " " : "", argtxt ? argtxt : "", verdict);
    free(argtxt);
    if (!defined) {
      printf("  decided by: nothing - %s is undefined (no rule matched and there is no default); the agent "
             "refuses requests its policy does not allow\n", ref);
    } else if (why.by_default && why.definitions) {
      printf("  decided by: %s:%d: %s\n  (none of the %zu %s rule bodies succeeded for this input, so the default "
             "applies)\n", why.file, why.row, line, why.definitions, request);
    } else if (why.by_default) {
      printf("  decided by: %s:%d: %s\n  (the policy has no other %s rule)\n", why.file, why.row, line, request);
    } else {
      printf("  decided by: %s:%d: %s\n", why.file, why.row, line);
    }
    if (defined && !json_is_boolean(value)) printf("  note: the rule's value is not a boolean; the agent allows only true\n");
    if (failing_ok) printf("  note: the policy sets AllowRequestsFailingPolicy := true, so the agent lets the refused "
                           "request through (a debug setting)\n");
  }
  rc = allowed || failing_ok ? 0 : 3;
  goto out;
fail:
  rc = coco_fail(what, &err);
out:
  json_decref(input);
  json_decref(value);
  json_decref(fail_ok);
  rego_policy_free(p);
  free(policy);
  free(text);
  return rc;
}

int coco_initdata_main(int argc, char **argv) {
  if (argc < 1) return coco__initdata_usage();
  const char *verb = argv[0];
  if (!strcmp(verb, "render")) return coco__cmd_render(argc - 1, argv + 1);
  if (!strcmp(verb, "explain-policy")) return coco__cmd_explain(argc - 1, argv + 1);
  if (!strcmp(verb, "encode") || !strcmp(verb, "decode") || !strcmp(verb, "digest") || !strcmp(verb, "pcr8") ||
      !strcmp(verb, "check")) {
    if (argc != 2) return coco__initdata_usage();
    if (!strcmp(verb, "check")) return coco__cmd_check(argv[1]);
    return coco__cmd_simple(verb, argv[1]);
  }
  fprintf(stderr, "coco: initdata: unknown verb \"%s\"\n", verb);
  return coco__initdata_usage();
}
