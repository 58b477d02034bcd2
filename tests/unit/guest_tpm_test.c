/*
 * TPM attester tests against swtpm on 127.0.0.1, with tpm2-tools playing the Azure paravisor:
 * the HCL report in NV 0x01400001 and RSA AKs persisted at 0x81000003 and 0x81010002. A local
 * one-file HTTP server stands in for IMDS; nothing contacts 169.254.169.254.
 */
#include "ct_test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/core_names.h>

#include "as_verifier.h"
#include "ct_codec.h"
#include "ct_digest.h"
#include "ct_json.h"
#include "guest_attester.h"
#include "guest_tpm.h"

static char g_dir[256];
static char g_tcti[128];
static pid_t g_swtpm = -1, g_imds = -1;
static int g_imds_port;
static int g_ready;
static void stop_imds(void);

static int run(const char *fmt, ...) CT_PRINTF(1, 2);
static int run(const char *fmt, ...) {
  char cmd[2048], full[2300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  int n = snprintf(full, sizeof full, "cd '%s' && export TPM2TOOLS_TCTI='%s' && (%s) >>'%s/tools.log' 2>&1",
                   g_dir, g_tcti, cmd, g_dir);
  if (n < 0 || (size_t)n >= sizeof full) return -1;
  return system(full);
}

static int port_free(int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int ok = bind(s, (struct sockaddr *)&a, sizeof a) == 0;
  close(s);
  return ok;
}

/* swtpm needs two adjacent ports (server, control = server + 1). Ports below the kernel's
 * ephemeral range are never handed out by a bind to port 0 in a parallel test. */
static int free_port_pair(void) {
  for (int tries = 0; tries < 200; tries++) {
    int port = 20000 + (int)(((unsigned)getpid() * 7919u + (unsigned)tries * 104729u) % 12000u) * 2;
    if (port_free(port) && port_free(port + 1)) return port;
  }
  return 0;
}

/* A tiny IMDS: answers every request with the given JSON body. */
static pid_t start_imds(const char *body, int *port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t l = sizeof a;
  getsockname(s, (struct sockaddr *)&a, &l);
  *port = ntohs(a.sin_port);
  listen(s, 8);
  pid_t pid = fork();
  if (pid == 0) {
    for (;;) {
      int c = accept(s, NULL, NULL);
      if (c < 0) continue;
      char req[8192];
      ssize_t n = read(c, req, sizeof req - 1);
      req[n > 0 ? n : 0] = 0;
      int meta = strstr(req, "Metadata: true") != NULL;
      char last[400];
      snprintf(last, sizeof last, "%s/imds-last-request", g_dir);
      FILE *lf = fopen(last, "wb");
      if (lf) {
        fwrite(req, 1, strlen(req), lf);
        fclose(lf);
      }
      char hdr[256];
      size_t blen = strlen(body);
      snprintf(hdr, sizeof hdr, "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
               meta ? "200 OK" : "400 Bad Request", meta ? blen : 0);
      if (write(c, hdr, strlen(hdr)) < 0 || (meta && write(c, body, blen) < 0)) {
      }
      close(c);
    }
  }
  close(s);
  return pid;
}

static int setup_group(void **state) {
  (void)state;
  if (system("command -v swtpm >/dev/null && command -v tpm2_nvdefine >/dev/null") != 0) {
    fprintf(stderr, "SKIP: swtpm or tpm2-tools not installed\n");
    return 0;
  }
  snprintf(g_dir, sizeof g_dir, "/tmp/guest-tpm-XXXXXX");
  assert_non_null(mkdtemp(g_dir));
  /* A port taken between the check and swtpm's bind makes swtpm exit: then try another pair. */
  int up = 0;
  for (int attempt = 0; attempt < 5 && !up; attempt++) {
    int port = free_port_pair(), ctrl = port + 1; /* the swtpm TCTI expects control on port+1 */
    assert_int_not_equal(port, 0);
    snprintf(g_tcti, sizeof g_tcti, "swtpm:host=127.0.0.1,port=%d", port);
    g_swtpm = fork();
    if (g_swtpm == 0) {
      char srv[128], ctl[128], st[300];
      snprintf(srv, sizeof srv, "type=tcp,port=%d,bindaddr=127.0.0.1", port);
      snprintf(ctl, sizeof ctl, "type=tcp,port=%d,bindaddr=127.0.0.1", ctrl);
      snprintf(st, sizeof st, "dir=%s", g_dir);
      execlp("swtpm", "swtpm", "socket", "--tpm2", "--server", srv, "--ctrl", ctl, "--flags",
             "not-need-init,startup-clear", "--tpmstate", st, (char *)NULL);
      _exit(127);
    }
    for (int i = 0; i < 50; i++) {
      if (run("tpm2_getrandom 4 >/dev/null") == 0) {
        up = 1;
        break;
      }
      if (waitpid(g_swtpm, NULL, WNOHANG) == g_swtpm) {
        g_swtpm = 0;
        break;
      }
      usleep(100000);
    }
  }
  assert_true(up);
  /* Restricted RSASSA signing keys, persisted where the paravisor and the tpm attester look. */
  const char *attrs = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign";
  assert_int_equal(run("tpm2_createprimary -Q -C o -G rsa2048:rsassa-sha256:null -a '%s' -c ak.ctx"
                       " && tpm2_evictcontrol -Q -C o -c ak.ctx 0x81000003 && tpm2_flushcontext -t",
                       attrs), 0);
  assert_int_equal(run("tpm2_createprimary -Q -C e -G rsa2048:rsassa-sha256:null -a '%s' -c ak2.ctx"
                       " && tpm2_evictcontrol -Q -C o -c ak2.ctx 0x81010002 && tpm2_flushcontext -t",
                       attrs), 0);
  g_ready = 1;
  return 0;
}

static int teardown_group(void **state) {
  (void)state;
  if (g_swtpm > 0) {
    kill(g_swtpm, SIGTERM);
    waitpid(g_swtpm, NULL, 0);
  }
  stop_imds();
  if (g_dir[0]) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) return -1;
  }
  return 0;
}

#define NEED_TPM()                                                                                 \
  do {                                                                                             \
    if (!g_ready) skip();                                                                          \
  } while (0)

/* The vector HCL reports are 2600 bytes but swtpm caps NV indices at 2048, so the simulated
 * paravisor keeps the vector's header and hardware report and a shortened VarData. */
static uint8_t *load_hcl_from(const char *vec, size_t *len) {
  uint8_t *hcl = NULL;
  size_t n = 0;
  char path[4096];
  if (!ct_test_vector_path(vec, path, sizeof path)) return NULL;
  ct_err err;
  CT_ASSERT_OK(ct_file_read(path, 1 << 20, &hcl, &n, &err), &err);
  size_t var = 2048 - 1236;
  hcl[1232] = (uint8_t)var;
  hcl[1233] = (uint8_t)(var >> 8);
  hcl[1234] = hcl[1235] = 0;
  *len = 2048;
  return hcl;
}

static uint8_t *load_hcl(size_t *len) { return load_hcl_from("az-snp-vtpm/hcl-report.bin", len); }

static void stop_imds(void) {
  if (g_imds > 0) {
    kill(g_imds, SIGTERM);
    waitpid(g_imds, NULL, 0);
    g_imds = -1;
  }
}

static EVP_PKEY *spki_key(const uint8_t *der, size_t len) {
  const uint8_t *p = der;
  EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);
  assert_non_null(k);
  return k;
}

static int rsa_verify(EVP_PKEY *k, const uint8_t *msg, size_t mlen, const uint8_t *sig, size_t slen) {
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k) == 1 &&
           EVP_DigestVerify(md, sig, slen, msg, mlen) == 1;
  EVP_MD_CTX_free(md);
  return ok;
}

/* extraData of a marshalled TPMS_ATTEST: magic, type, qualifiedSigner (TPM2B), extraData. */
static const uint8_t *attest_extra(const uint8_t *m, size_t len, size_t *n) {
  assert_true(len > 10);
  assert_int_equal(m[0], 0xff);
  assert_int_equal(m[1], 'T');
  size_t signer = (size_t)(m[6] << 8 | m[7]);
  size_t off = 8 + signer;
  *n = (size_t)(m[off] << 8 | m[off + 1]);
  return m + off + 2;
}

/* pcrDigest is the last TPM2B of a quote: check it equals sha256 over the reported PCRs. */
static void check_pcr_digest(const uint8_t *m, size_t len, const json_t *pcrs) {
  uint8_t cat[24 * 32];
  ct_err err;
  assert_int_equal(json_array_size(pcrs), 24);
  for (size_t i = 0; i < 24; i++) {
    const char *h = json_string_value(json_array_get(pcrs, i));
    uint8_t *b = NULL;
    size_t bl = 0;
    CT_ASSERT_OK(ct_hex_decode(h, strlen(h), &b, &bl, &err), &err);
    assert_int_equal(bl, 32);
    memcpy(cat + 32 * i, b, 32);
    free(b);
  }
  uint8_t d[32];
  ct_sha256(cat, sizeof cat, d);
  assert_int_equal(m[len - 34], 0);
  assert_int_equal(m[len - 33], 32);
  assert_memory_equal(m + len - 32, d, 32);
}

static uint8_t *dehex(const json_t *s, size_t *n) {
  uint8_t *b = NULL;
  ct_err err;
  const char *h = json_string_value(s);
  assert_non_null(h);
  CT_ASSERT_OK(ct_hex_decode(h, strlen(h), &b, n, &err), &err);
  return b;
}

static uint8_t *deb64(ct_b64_variant v, const json_t *s, size_t *n) {
  uint8_t *b = NULL;
  ct_err err;
  const char *h = json_string_value(s);
  assert_non_null(h);
  CT_ASSERT_OK(ct_b64_decode(v, h, strlen(h), &b, n, &err), &err);
  return b;
}

static void test_az_snp_vtpm_evidence(void **state) {
  (void)state;
  NEED_TPM();
  size_t hlen = 0;
  uint8_t *hcl = load_hcl(&hlen);
  if (!hcl) skip();
  char path[4096];
  snprintf(path, sizeof path, "%s/hcl.bin", g_dir);
  FILE *f = fopen(path, "wb");
  fwrite(hcl, 1, hlen, f);
  fclose(f);
  assert_int_equal(run("tpm2_nvdefine 0x01400001 -C o -s %zu -a 'ownerread|ownerwrite' && "
                       "tpm2_nvwrite 0x01400001 -C o -i hcl.bin", hlen), 0);
  /* IMDS serves the VCEK of the vector. */
  uint8_t *pem = NULL;
  size_t plen = 0;
  CT_READ_VECTOR("az-snp-vtpm/vcek.pem", &pem, &plen);
  json_t *body = json_pack("{s:s,s:s}", "vcekCert", (char *)pem, "certificateChain", "");
  char *bs = json_dumps(body, JSON_COMPACT);
  g_imds = start_imds(bs, &g_imds_port);
  free(bs);
  json_decref(body);
  char imds[64];
  snprintf(imds, sizeof imds, "http://127.0.0.1:%d", g_imds_port);

  guest_cfg cfg = {.tpm_tcti = g_tcti, .imds_url = imds, .az_report_delay_ms = 0};
  ct_err err;
  guest_tee tee;
  CT_ASSERT_OK(guest_tee_detect(&cfg, &tee, &err), &err);
  assert_int_equal(tee, GUEST_TEE_AZ_SNP_VTPM);
  uint8_t rd[48];
  for (int i = 0; i < 48; i++) rd[i] = (uint8_t)(0xa0 + i);
  json_t *ev = NULL;
  CT_ASSERT_OK(guest_get_evidence(&cfg, tee, rd, sizeof rd, &ev, &err), &err);
  assert_int_equal(json_integer_value(json_object_get(ev, "version")), 2);
  size_t n = 0;
  /* hcl_report: URL-safe base64 with padding of the NV bytes. */
  const char *h64 = json_string_value(json_object_get(ev, "hcl_report"));
  assert_int_equal(strlen(h64) % 4, 0);
  uint8_t *h = deb64(CT_B64_ANY, json_object_get(ev, "hcl_report"), &n);
  assert_int_equal(n, hlen);
  assert_memory_equal(h, hcl, hlen);
  free(h);
  /* vcek: the DER of the IMDS PEM. */
  uint8_t *vder = deb64(CT_B64_ANY, json_object_get(ev, "vcek"), &n);
  BIO *b = BIO_new_mem_buf(pem, (int)plen);
  X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
  unsigned char *xd = NULL;
  int xl = i2d_X509(x, &xd);
  assert_int_equal((size_t)xl, n);
  assert_memory_equal(xd, vder, n);
  OPENSSL_free(xd);
  X509_free(x);
  BIO_free(b);
  free(vder);
  /* tpm_quote: nonce == report data exactly, signature verifies with the AK, PCR digest. */
  const json_t *q = json_object_get(ev, "tpm_quote");
  size_t mlen = 0, slen = 0;
  uint8_t *msg = dehex(json_object_get(q, "message"), &mlen);
  uint8_t *sig = dehex(json_object_get(q, "signature"), &slen);
  assert_int_equal(slen, 256);
  size_t xn = 0;
  const uint8_t *extra = attest_extra(msg, mlen, &xn);
  assert_int_equal(xn, 48);
  assert_memory_equal(extra, rd, 48);
  check_pcr_digest(msg, mlen, json_object_get(q, "pcrs"));
  guest_tpm *t = NULL;
  CT_ASSERT_OK(guest_tpm_open(g_tcti, &t, &err), &err);
  uint8_t *spki = NULL, *nv = NULL;
  size_t spki_len = 0, nvlen = 0;
  CT_ASSERT_OK(guest_tpm_ak_spki(t, GUEST_AZ_AK_HANDLE, &spki, &spki_len, &err), &err);
  /* The report data reached the paravisor's NV index with exactly its size. */
  CT_ASSERT_OK(guest_tpm_nv_read(t, GUEST_AZ_REPORT_DATA_NV, &nv, &nvlen, &err), &err);
  assert_int_equal(nvlen, 48);
  assert_memory_equal(nv, rd, 48);
  guest_tpm_close(t);
  EVP_PKEY *k = spki_key(spki, spki_len);
  assert_true(rsa_verify(k, msg, mlen, sig, slen));
  msg[20] ^= 1;
  assert_false(rsa_verify(k, msg, mlen, sig, slen));
  EVP_PKEY_free(k);
  free(spki);
  free(nv);
  free(msg);
  free(sig);
  json_decref(ev);

  /* A second, shorter report data redefines the index with the new size. */
  CT_ASSERT_OK(guest_get_evidence(&cfg, tee, rd, 32, &ev, &err), &err);
  json_decref(ev);
  CT_ASSERT_OK(guest_tpm_open(g_tcti, &t, &err), &err);
  CT_ASSERT_OK(guest_tpm_nv_read(t, GUEST_AZ_REPORT_DATA_NV, &nv, &nvlen, &err), &err);
  assert_int_equal(nvlen, 32);
  free(nv);
  guest_tpm_close(t);

  /* The SNP attester refuses an HCL of the other type; IMDS failures are clear errors. */
  assert_int_equal(guest_get_evidence(&cfg, GUEST_TEE_AZ_TDX_VTPM, rd, 48, &ev, &err), CT_EINVAL);
  cfg.imds_url = "http://127.0.0.1:1";
  assert_int_equal(guest_get_evidence(&cfg, tee, rd, 48, &ev, &err), CT_EIO);
  assert_non_null(strstr(err.msg, "imds"));
  free(pem);
  free(hcl);
  stop_imds();
}

static void test_az_tdx_vtpm_evidence(void **state) {
  (void)state;
  NEED_TPM();
  size_t hlen = 0;
  uint8_t *hcl = load_hcl_from("az-tdx-vtpm/hcl-report.bin", &hlen);
  if (!hcl) skip();
  uint8_t *tdq = NULL;
  size_t tdq_len = 0;
  CT_READ_VECTOR("az-tdx-vtpm/td-quote.bin", &tdq, &tdq_len);
  char path[4096];
  snprintf(path, sizeof path, "%s/hcl-tdx.bin", g_dir);
  FILE *f = fopen(path, "wb");
  fwrite(hcl, 1, hlen, f);
  fclose(f);
  /* Replace the SNP paravisor of the previous test by a TDX one. */
  assert_int_equal(run("tpm2_nvundefine 0x01400001 -C o 2>/dev/null; "
                       "tpm2_nvdefine 0x01400001 -C o -s %zu -a 'ownerread|ownerwrite' && "
                       "tpm2_nvwrite 0x01400001 -C o -i hcl-tdx.bin", hlen), 0);
  ct_err err;
  char *q64 = NULL;
  CT_ASSERT_OK(ct_b64_encode(CT_B64_URL, tdq, tdq_len, &q64, &err), &err);
  json_t *body = json_pack("{s:s}", "quote", q64);
  char *bs = json_dumps(body, JSON_COMPACT);
  g_imds = start_imds(bs, &g_imds_port);
  free(bs);
  free(q64);
  json_decref(body);
  char imds[64];
  snprintf(imds, sizeof imds, "http://127.0.0.1:%d", g_imds_port);
  guest_cfg cfg = {.tpm_tcti = g_tcti, .imds_url = imds, .az_report_delay_ms = 0};
  guest_tee tee;
  CT_ASSERT_OK(guest_tee_detect(&cfg, &tee, &err), &err);
  assert_int_equal(tee, GUEST_TEE_AZ_TDX_VTPM);
  uint8_t rd[48];
  memset(rd, 0x33, sizeof rd);
  json_t *ev = NULL;
  CT_ASSERT_OK(guest_get_evidence(&cfg, tee, rd, sizeof rd, &ev, &err), &err);
  size_t n = 0;
  uint8_t *q = deb64(CT_B64_ANY, json_object_get(ev, "td_quote"), &n);
  assert_int_equal(n, tdq_len);
  assert_memory_equal(q, tdq, n);
  free(q);
  assert_null(json_object_get(ev, "vcek"));
  /* IMDS was asked for a quote over the TD report cut out of the HCL report. */
  uint8_t *req = NULL;
  size_t rlen = 0;
  snprintf(path, sizeof path, "%s/imds-last-request", g_dir);
  CT_ASSERT_OK(ct_file_read(path, 1 << 20, &req, &rlen, &err), &err);
  assert_non_null(strstr((char *)req, "POST /acc/tdquote"));
  char *want = NULL;
  CT_ASSERT_OK(ct_b64_encode(CT_B64_URL, hcl + 32, 1024, &want, &err), &err);
  assert_non_null(strstr((char *)req, want));
  free(want);
  free(req);
  const json_t *qt = json_object_get(ev, "tpm_quote");
  size_t mlen;
  uint8_t *msg = dehex(json_object_get(qt, "message"), &mlen);
  size_t xn;
  const uint8_t *extra = attest_extra(msg, mlen, &xn);
  assert_int_equal(xn, 48);
  assert_memory_equal(extra, rd, 48);
  free(msg);
  json_decref(ev);
  stop_imds();
  free(tdq);
  free(hcl);
}

static char *b64url_bn(EVP_PKEY *k, const char *name) {
  BIGNUM *bn = NULL;
  assert_int_equal(EVP_PKEY_get_bn_param(k, name, &bn), 1);
  uint8_t buf[512];
  int n = BN_bn2bin(bn, buf);
  BN_free(bn);
  char *out = NULL;
  ct_err err;
  CT_ASSERT_OK(ct_b64_encode(CT_B64_URL, buf, (size_t)n, &out, &err), &err);
  return out;
}

/* Our az-snp-vtpm evidence through this project's az-snp-vtpm verifier (Trustee's rules): the
 * simulated paravisor publishes the swtpm AK as HCLAkPub and our report data as user-data, so
 * the verifier gets past the JSON, the HCL layout, the quote signature, user-data and the quote
 * nonce, and stops only where the vector's SNP report (signed by AMD) does not hash our VarData. */
static void test_az_evidence_through_verifier(void **state) {
  (void)state;
  NEED_TPM();
  const as_verifier *v = as_verifier_find("az-snp-vtpm");
  if (!v) skip();
  size_t hlen = 0;
  uint8_t *hcl = load_hcl(&hlen);
  if (!hcl) skip();
  ct_err err;
  guest_tpm *t = NULL;
  uint8_t *spki = NULL;
  size_t spki_len = 0;
  CT_ASSERT_OK(guest_tpm_open(g_tcti, &t, &err), &err);
  CT_ASSERT_OK(guest_tpm_ak_spki(t, GUEST_AZ_AK_HANDLE, &spki, &spki_len, &err), &err);
  guest_tpm_close(t);
  EVP_PKEY *ak = spki_key(spki, spki_len);
  char *n = b64url_bn(ak, OSSL_PKEY_PARAM_RSA_N), *e = b64url_bn(ak, OSSL_PKEY_PARAM_RSA_E);
  EVP_PKEY_free(ak);
  uint8_t rd[48], ud[64] = {0};
  for (int i = 0; i < 48; i++) rd[i] = (uint8_t)(7 * i + 1);
  memcpy(ud, rd, 48);
  char udhex[129];
  ct_hex_into(ud, 64, udhex);
  char var[1024];
  int vl = snprintf(var, sizeof var,
                    "{\"keys\":[{\"kid\":\"HCLAkPub\",\"key_ops\":[\"sign\"],\"kty\":\"RSA\","
                    "\"e\":\"%s\",\"n\":\"%s\"}],\"user-data\":\"%s\"}", e, n, udhex);
  free(n);
  free(e);
  assert_true(vl > 0 && 1236 + (size_t)vl <= 2048);
  memcpy(hcl + 1236, var, (size_t)vl);
  hcl[1232] = (uint8_t)vl;
  hcl[1233] = (uint8_t)(vl >> 8);
  hlen = 1236 + (size_t)vl;
  char path[4096];
  snprintf(path, sizeof path, "%s/hcl-ak.bin", g_dir);
  FILE *f = fopen(path, "wb");
  fwrite(hcl, 1, hlen, f);
  fclose(f);
  assert_int_equal(run("tpm2_nvundefine 0x01400001 -C o 2>/dev/null; "
                       "tpm2_nvdefine 0x01400001 -C o -s %zu -a 'ownerread|ownerwrite' && "
                       "tpm2_nvwrite 0x01400001 -C o -i hcl-ak.bin", hlen), 0);
  uint8_t *pem = NULL;
  size_t plen = 0;
  CT_READ_VECTOR("az-snp-vtpm/vcek.pem", &pem, &plen);
  json_t *body = json_pack("{s:s}", "vcekCert", (char *)pem);
  char *bs = json_dumps(body, JSON_COMPACT);
  g_imds = start_imds(bs, &g_imds_port);
  free(bs);
  json_decref(body);
  char imds[64];
  snprintf(imds, sizeof imds, "http://127.0.0.1:%d", g_imds_port);
  guest_cfg cfg = {.tpm_tcti = g_tcti, .imds_url = imds, .az_report_delay_ms = 0};
  json_t *ev = NULL;
  CT_ASSERT_OK(guest_get_evidence(&cfg, GUEST_TEE_AZ_SNP_VTPM, rd, sizeof rd, &ev, &err), &err);
  as_verifier_config vc = {0};
  void *st = NULL;
  if (v->create) CT_ASSERT_OK(v->create(&vc, &st, &err), &err);
  as_verify_request req = {.tee = "az-snp-vtpm", .evidence = ev, .report_data = rd,
                           .report_data_len = sizeof rd};
  json_t *claims = NULL;
  assert_int_equal(v->verify(st, &req, &claims, &err), CT_ECRYPTO);
  assert_non_null(strstr(err.msg, "SNP report report_data mismatch"));
  /* A different expected report data is caught earlier, at the user-data / nonce checks. */
  uint8_t other[48];
  memcpy(other, rd, 48);
  other[47] ^= 1;
  req.report_data = other;
  assert_int_equal(v->verify(st, &req, &claims, &err), CT_ECRYPTO);
  assert_null(strstr(err.msg, "SNP report report_data mismatch"));
  if (v->destroy) v->destroy(st);
  json_decref(ev);
  stop_imds();
  free(pem);
  free(spki);
  free(hcl);
}

static void test_tpm_evidence_and_pcr8_binding(void **state) {
  (void)state;
  NEED_TPM();
  guest_cfg cfg = {.tpm_tcti = g_tcti, .tpm_ak_handle = GUEST_TPM_AK_DEFAULT};
  ct_err err;
  uint8_t rd[48];
  memset(rd, 0x42, sizeof rd);
  json_t *ev = NULL;
  CT_ASSERT_OK(guest_get_evidence(&cfg, GUEST_TEE_TPM, rd, sizeof rd, &ev, &err), &err);
  const json_t *q = json_object_get(ev, "tpm_quote");
  size_t mlen, slen, klen, rlen;
  uint8_t *msg = deb64(CT_B64_STD, json_object_get(q, "message"), &mlen);
  uint8_t *sig = deb64(CT_B64_STD, json_object_get(q, "signature"), &slen);
  uint8_t *ak = deb64(CT_B64_STD, json_object_get(ev, "ak_public"), &klen);
  uint8_t *r = deb64(CT_B64_STD, json_object_get(ev, "report_data"), &rlen);
  assert_int_equal(rlen, GUEST_TPM_REPORT_DATA);
  assert_memory_equal(r, rd, GUEST_TPM_REPORT_DATA);
  /* Marshalled TPMT_SIGNATURE: RSASSA (0x0014), SHA-256 (0x000b), size, bytes. */
  assert_int_equal(sig[0] << 8 | sig[1], 0x0014);
  assert_int_equal(sig[2] << 8 | sig[3], 0x000b);
  size_t sl = (size_t)(sig[4] << 8 | sig[5]);
  assert_int_equal(sl + 6, slen);
  size_t xn;
  const uint8_t *extra = attest_extra(msg, mlen, &xn);
  assert_int_equal(xn, 32); /* cut to 32 bytes, as upstream's attester does and its verifier expects */
  assert_memory_equal(extra, rd, 32);
  check_pcr_digest(msg, mlen, json_object_get(q, "pcrs"));
  EVP_PKEY *k = spki_key(ak, klen);
  assert_true(rsa_verify(k, msg, mlen, sig + 6, sl));
  EVP_PKEY_free(k);
  free(msg);
  free(sig);
  free(ak);
  free(r);
  json_decref(ev);

  /* PCR8 binding: SHA256(0^32 || digest), what Trustee's verify_init_data expects. */
  guest_tpm *t = NULL;
  uint8_t before[24][32], after[24][32];
  CT_ASSERT_OK(guest_tpm_open(g_tcti, &t, &err), &err);
  CT_ASSERT_OK(guest_tpm_pcr_read(t, before, &err), &err);
  guest_tpm_close(t);
  uint8_t zero[32] = {0};
  assert_memory_equal(before[8], zero, 32);
  uint8_t digest[32], cat[64] = {0};
  ct_sha256("initdata", 8, digest);
  CT_ASSERT_OK(guest_bind_init_data(&cfg, GUEST_TEE_TPM, digest, 32, &err), &err);
  CT_ASSERT_OK(guest_tpm_open(g_tcti, &t, &err), &err);
  CT_ASSERT_OK(guest_tpm_pcr_read(t, after, &err), &err);
  guest_tpm_close(t);
  memcpy(cat + 32, digest, 32);
  uint8_t want[32];
  ct_sha256(cat, 64, want);
  assert_memory_equal(after[8], want, 32);
  /* Binding again (a restart, or CAA's unit already extended) leaves PCR8 unchanged ... */
  CT_ASSERT_OK(guest_bind_init_data(&cfg, GUEST_TEE_TPM, digest, 32, &err), &err);
  CT_ASSERT_OK(guest_tpm_open(g_tcti, &t, &err), &err);
  CT_ASSERT_OK(guest_tpm_pcr_read(t, after, &err), &err);
  guest_tpm_close(t);
  assert_memory_equal(after[8], want, 32);
  /* ... and a different digest cannot be bound any more. */
  digest[0] ^= 1;
  assert_int_equal(guest_bind_init_data(&cfg, GUEST_TEE_TPM, digest, 32, &err), CT_EDENIED);
  uint8_t d48[48] = {0};
  assert_int_equal(guest_bind_init_data(&cfg, GUEST_TEE_AZ_SNP_VTPM, d48, 48, &err), CT_EINVAL);
  assert_non_null(strstr(err.msg, "sha256"));
  /* A runtime measurement extends the sha256 PCR with the entry's SHA-256 (MR index = PCR).
   * PCR 23 (application use): 17-22 need a higher locality than swtpm's default. */
  char logpath[400];
  snprintf(logpath, sizeof logpath, "%s/aael", g_dir);
  cfg.eventlog_path = logpath;
  CT_ASSERT_OK(guest_runtime_measure(&cfg, GUEST_TEE_TPM, 23, "domain", "operation", "content", &err),
               &err);
  const char *text = "domain operation content";
  uint8_t tagged[64];
  memcpy(tagged, "LEAA", 4);
  uint32_t tl = (uint32_t)strlen(text);
  memcpy(tagged + 4, &tl, 4);
  memcpy(tagged + 8, text, tl);
  uint8_t d256[32], cat2[64] = {0}, want17[32];
  ct_sha256(tagged, tl + 8, d256);
  memcpy(cat2 + 32, d256, 32);
  ct_sha256(cat2, 64, want17);
  CT_ASSERT_OK(guest_tpm_open(g_tcti, &t, &err), &err);
  CT_ASSERT_OK(guest_tpm_pcr_read(t, after, &err), &err);
  guest_tpm_close(t);
  assert_memory_equal(after[23], want17, 32);
  uint8_t *log = NULL;
  size_t loglen = 0;
  CT_ASSERT_OK(ct_file_read(logpath, 1 << 16, &log, &loglen, &err), &err);
  assert_int_equal(loglen, 14 + 32 + 4 + tl + 8);
  assert_int_equal(log[0], 23);
  assert_int_equal(log[12], 0x0b);
  assert_memory_equal(log + 14, d256, 32);
  free(log);
  cfg.eventlog_path = NULL;
  /* A missing AK is a clear error. */
  cfg.tpm_ak_handle = 0x81010077;
  assert_int_equal(guest_get_evidence(&cfg, GUEST_TEE_TPM, rd, 48, &ev, &err), CT_ENOTFOUND);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_az_snp_vtpm_evidence),
      cmocka_unit_test(test_az_tdx_vtpm_evidence),
      cmocka_unit_test(test_az_evidence_through_verifier),
      cmocka_unit_test(test_tpm_evidence_and_pcr8_binding),
  };
  return cmocka_run_group_tests(tests, setup_group, teardown_group);
}
