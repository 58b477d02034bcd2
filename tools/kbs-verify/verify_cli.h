/*
 * verify_cli.h - the offline `kbs verify` command: checks one piece of evidence with a built-in
 * verifier, without a KBS or network, and prints the claims or the precise reason for refusal.
 *
 *   verify --tee TEE --evidence FILE (--report-data HEX | --runtime-data FILE.json)
 *          [--init-data FILE.toml] [--collateral DIR]
 *
 * --runtime-data: report data = SHA-384 of the RFC 8785 (JCS) form of that JSON, as Trustee's
 * AS computes it. --init-data: the init-data digest of that document. --collateral: the
 * offline VCEK store for snp (Trustee layout vcek/<hwid>/<tcb>_vcek.der; a vcek.der or vlek.der
 * at its top is used when the evidence carries no cert_chain), the TDX collateral directory, and
 * the trusted TPM AK directory. For snp, FILE may also be a raw 1184-byte report.
 */
#ifndef VERIFY_CLI_H
#define VERIFY_CLI_H

#include <stdio.h>

/* argv[0] is the command name ("verify"). Returns 0 when the evidence verifies (claims JSON on
 * stdout), 1 when it is refused (reason on stderr), 2 on a usage or input error. */
int as_verify_cli_main(int argc, char **argv);

/* The same, writing to the given streams (for tests and embedding). */
int as_verify_cli_run(int argc, char **argv, FILE *out, FILE *errf);

#endif
