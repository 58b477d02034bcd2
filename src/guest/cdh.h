/*
 * cdh.h - the confidential data hub inside the guest: configuration (guest-components' aa.toml
 * and cdh.toml), init-data, sealed secrets and the hub that serves resources, tokens and
 * evidence through one KBS client per KBS.
 */
#ifndef CDH_H
#define CDH_H

#include <jansson.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ct_status.h"
#include "guest_attester.h"
#include "kbc.h"

#define CDH_CONFIG_MAX (1u << 20)     /* config and init-data files */
#define CDH_MAX_CREDENTIALS 64
#define CDH_SEALED_MAX (64u << 10)    /* a sealed secret string */
#define CDH_DEFAULT_SEALED_KEY_DIR "/run/confidential-containers/cdh/sealed-secret"

typedef struct cdh_credential {
  char *resource_uri;
  char *path;
} cdh_credential;

typedef struct cdh_config {
  char *kbs_url;          /* [kbc] url (cdh.toml) */
  char *kbs_cert;         /* [kbc] kbs_cert: PEM text */
  char *aa_kbs_url;       /* [token_configs.kbs] url (aa.toml) */
  char *aa_kbs_cert;      /* [token_configs.kbs] cert */
  char *tee_key_alg;      /* [token_configs.kbs] tee_key_algorithm or top-level */
  cdh_credential creds[CDH_MAX_CREDENTIALS];
  size_t ncreds;
  char *image_security_policy_uri; /* [image] image_security_policy_uri: kbs:///, file path */
  char *image_security_policy;     /* [image] image_security_policy: inline policy JSON */
  char *registry_credentials_uri;  /* [image] authenticated_registry_credentials_uri */
  char *registry_configuration_uri; /* [image] registry_configuration_uri: kbs:///, file path */
  char *registry_config;           /* [image.registry_config] as JSON text (wins over the URI) */
  char *extra_root_certificates;   /* [image] extra_root_certificates, concatenated PEM */
  char *https_proxy, *http_proxy, *no_proxy; /* [image.image_pull_proxy] */
  char *socket;                    /* socket (the CDH ttRPC socket) */
  char *aa_socket;                 /* [aa] aa_socket */
  bool skip_sealed_secret_verification;
  bool eventlog_enabled;  /* aa.toml [eventlog_config] enable_eventlog */
  int eventlog_init_pcr;  /* [eventlog_config] init_pcr; 0 means the default 17 */
} cdh_config;

/* Parses cdh.toml text into `cfg` (merging; later values win). [kbc] name must be "cc_kbc".
 * Unknown keys are ignored, as upstream does. */
CT_RESULT cdh_config_parse_cdh(const char *text, size_t len, cdh_config *cfg, ct_err *err);
/* Parses aa.toml text: [token_configs.kbs] url, cert, tee_key_algorithm. */
CT_RESULT cdh_config_parse_aa(const char *text, size_t len, cdh_config *cfg, ct_err *err);
/* Fills kbs_url from AA_KBC_PARAMS or the kernel command line (`agent.aa_kbc_params=cc_kbc::<url>`
 * in `cmdline_path`) when no configuration file set one. Absent everywhere is not an error. */
CT_RESULT cdh_config_kbc_params(cdh_config *cfg, const char *cmdline_path, ct_err *err);
/* Appends credentials from the kernel command line, `cdh.kbs_resources=<uri>::<path>,...` (as
 * upstream does). The command line is host-controlled, so every path must lie under
 * CDH_CMDLINE_CRED_DIR. */
#define CDH_CMDLINE_CRED_DIR "/run/confidential-containers/cdh/kbs/"
CT_RESULT cdh_config_cmdline_credentials(cdh_config *cfg, const char *cmdline, size_t len,
                                         ct_err *err);
void cdh_config_free(cdh_config *cfg);

/* --- init-data ------------------------------------------------------------------------- */

typedef struct cdh_initdata {
  char *text;             /* the exact TOML bytes (digest input), NUL-terminated */
  size_t len;
  json_t *doc;            /* parsed TOML */
  char algorithm[8];      /* sha256 | sha384 | sha512 */
  uint8_t digest[64];
  size_t digest_len;
} cdh_initdata;

/* Parses and digests init-data TOML: version, algorithm and a [data] table of strings. */
CT_RESULT cdh_initdata_parse(const char *text, size_t len, cdh_initdata *out, ct_err *err);
/* Reads init-data from `path`; peer-pod files (/run/peerpod/initdata) may hold base64 of the
 * TOML, which is detected and decoded. */
CT_RESULT cdh_initdata_load(const char *path, cdh_initdata *out, ct_err *err);
/* data["name"] (e.g. "cdh.toml") or NULL. Borrowed. */
const char *cdh_initdata_entry(const cdh_initdata *d, const char *name);
void cdh_initdata_free(cdh_initdata *d);

/* --- sealed secrets -------------------------------------------------------------------- */

typedef struct cdh_sealed {
  json_t *header;         /* {"alg","kid"} or NULL when verification was skipped */
  json_t *payload;        /* {"version","type","provider","name",...} */
} cdh_sealed;

/* Splits `sealed.<b64 header>.<b64 payload>.<b64 signature>` and decodes header and payload
 * (no verification). */
CT_RESULT cdh_sealed_parse(const char *secret, size_t len, cdh_sealed *out, ct_err *err);
/* Verifies the ES256 signature with a P-256 public JWK (JSON text). */
CT_RESULT cdh_sealed_verify(const char *secret, size_t len, const char *jwk_json, size_t jwk_len,
                            ct_err *err);
void cdh_sealed_free(cdh_sealed *s);

/* --- the hub --------------------------------------------------------------------------- */

/* A hub is thread-safe: the daemon calls it from its worker threads. One client attests (under
 * a lock); resource fetches run in parallel through passport-mode clients that share its token
 * and TEE key. */
typedef struct cdh_hub cdh_hub;

typedef struct cdh_hub_opts {
  const cdh_config *config;
  guest_tee tee;
  const guest_cfg *guest;
  const cdh_initdata *initdata;  /* may be NULL */
  const char *sealed_key_dir;    /* NULL: CDH_DEFAULT_SEALED_KEY_DIR */
  const char *token;             /* passport mode: an attestation token ... */
  const char *tee_key_pem;       /* ... and the PEM private key it was issued for */
  unsigned kbs_attempts;         /* 0: kbc default */
  unsigned kbs_backoff_ms;
} cdh_hub_opts;

CT_RESULT cdh_hub_new(const cdh_hub_opts *opts, cdh_hub **out, ct_err *err);
void cdh_hub_free(cdh_hub *h);
/* Fetches a kbs:// URI (or "repo/type/tag"). Caller wipes and frees *out. */
CT_RESULT cdh_hub_get_resource(cdh_hub *h, const char *uri, uint8_t **out, size_t *len, ct_err *err);
/* Verifies (unless disabled) and unseals a sealed secret. Caller wipes and frees *out. */
CT_RESULT cdh_hub_unseal(cdh_hub *h, const char *secret, size_t len, uint8_t **out, size_t *olen,
                         ct_err *err);
/* {"token":..,"tee_keypair":PEM} as the AA's GetToken("kbs") returns. Caller wipes and frees. */
CT_RESULT cdh_hub_token(cdh_hub *h, char **json, ct_err *err);
/* Evidence JSON for raw runtime data (at most 64 bytes). Caller frees *json. */
CT_RESULT cdh_hub_evidence(cdh_hub *h, const uint8_t *rd, size_t len, char **json, ct_err *err);
/* Records a runtime measurement (POST /aa/aael); `pcr` < 0 means [eventlog_config] init_pcr. */
CT_RESULT cdh_hub_measure(cdh_hub *h, const char *domain, const char *operation,
                          const char *content, int pcr, ct_err *err);
/* Writes every [[credentials]] resource to its path (mode 0600). */
CT_RESULT cdh_hub_provision_credentials(cdh_hub *h, ct_err *err);
/* Status for GET /info. Caller json_decref()s. */
json_t *cdh_hub_info(cdh_hub *h);
/* The TEE name as kbs-types spells it ("snp", "az-snp-vtpm", "sample", ...). */
const char *cdh_hub_tee_name(const cdh_hub *h);
/* The AA's GetAdditionalEvidence: a JSON map of evidence from additional devices (TEE name to
 * evidence); "{}" when the guest has none. Caller frees *json. */
CT_RESULT cdh_hub_additional_evidence(cdh_hub *h, const uint8_t *rd, size_t len, char **json,
                                      ct_err *err);

/* --- ocicrypt key provider (keyprovider.KeyProviderService/UnWrapKey) ------------------- */

/* Name of the ocicrypt key provider and suffix of the layer annotation that carries the
 * annotation packet: org.opencontainers.image.enc.keys.provider.attestation-agent. */
#define CDH_KEYPROVIDER_NAME "attestation-agent"
/* Unwraps a layer key: the input is ocicrypt's KeyProviderKeyWrapProtocolInput JSON
 * ({"op":"keyunwrap","keyunwrapparams":{"annotation":b64(packet)}}); the packet names the KEK
 * (kid, a kbs:// URI fetched from the KBS) and carries wrapped_data and iv (A256GCM). The output
 * is {"keyunwrapresults":{"optsdata":[bytes...]}}. Caller wipes and frees *out. */
CT_RESULT cdh_hub_unwrap_key(cdh_hub *h, const uint8_t *input, size_t len, uint8_t **out,
                             size_t *olen, ct_err *err);
/* Decrypts an annotation packet (the decoded JSON) into the layer's private options. */
CT_RESULT cdh_hub_unwrap_packet(cdh_hub *h, const char *packet, size_t len, uint8_t **out,
                                size_t *olen, ct_err *err);

/* --- image pull (api.ImagePullService/PullImage) ---------------------------------------- */

/* Pulls `image` under the image security policy ([image] image_security_policy_uri, else the
 * inline image_security_policy; none configured accepts every image) into bundle/rootfs, which
 * must be absent or empty, and records the AAEL PullImage event when the event log is on.
 * *digest: the manifest digest ("sha256:..."), caller frees. A policy denial is CT_EDENIED
 * with a message naming the failed check. Layers stream through a scratch file in `bundle`, so
 * memory stays bounded whatever their size. `cancel` (may be NULL) is polled while the layers
 * are fetched and unpacked: once set, the pull stops, removes what it unpacked and fails with
 * CT_EEXPIRED. */
CT_RESULT cdh_hub_pull_image(cdh_hub *h, const char *image, const char *bundle,
                             const atomic_int *cancel, char **digest, ct_err *err);
/* Resolves `image` and applies the policy without fetching layers. CT_OK: *verdict says why it
 * is allowed (caller frees); CT_EDENIED: err says why not. */
CT_RESULT cdh_hub_check_image(cdh_hub *h, const char *image, char **verdict, ct_err *err);
/* The configuration the hub was made with (borrowed). */
const cdh_config *cdh_hub_config(const cdh_hub *h);

/* --- secure mount (api.SecureMountService/SecureMount) ---------------------------------- */

#define CDH_MOUNT_OPTIONS_MAX 32
#define CDH_MOUNT_FLAGS_MAX 32

typedef struct cdh_mount_request {
  char *volume_type;                 /* "block-device" */
  char *keys[CDH_MOUNT_OPTIONS_MAX];  /* options map */
  char *values[CDH_MOUNT_OPTIONS_MAX];
  size_t noptions;
  char *flags[CDH_MOUNT_FLAGS_MAX];
  size_t nflags;
  char *mount_point;
} cdh_mount_request;

CT_RESULT cdh_mount_request_new(cdh_mount_request **out, ct_err *err);
/* Later values for the same key win (a protobuf map). */
CT_RESULT cdh_mount_request_set_option(cdh_mount_request *m, const char *key, const char *value,
                                       ct_err *err);
CT_RESULT cdh_mount_request_add_flag(cdh_mount_request *m, const char *flag, ct_err *err);
const char *cdh_mount_request_option(const cdh_mount_request *m, const char *key);
void cdh_mount_request_free(cdh_mount_request *m);
CT_RESULT cdh_hub_secure_mount(cdh_hub *h, const cdh_mount_request *m, ct_err *err);

#endif
