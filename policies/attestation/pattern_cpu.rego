# coco-trust pattern: the attestation policy of the pattern's KBS (deployed as policy id
# "default_cpu" by deploy/charts/kbs; docs/pattern.md).
#
# Peer pods on Azure attest with vTPM evidence (az-snp-vtpm, az-tdx-vtpm); bare-metal guests
# with a plain vTPM (tpm). The pod VM image is pinned by five PCRs, registered by
# `coco refvalues from-measurements` as "<prefix>_pcrNN" (prefix snp, tdx or tpm):
#   PCR03, PCR09, PCR11, PCR12  the dm-verity image's measurements (firmware, boot, UKI)
#   PCR08                       the init-data: sha256(0^32 || sha256(initdata.toml))
#
# AR4SI trust vector:
#   executables   3   every PCR is registered and matches its reference value
#                 33  a PCR has no reference value (nothing registered yet: unrecognised)
#                 96  a PCR differs from its registered reference value: the boot chain or the
#                     init-data is not the approved one (contraindicated)
#   hardware      2   genuine TEE evidence (the verifier checked the vTPM quote and the report)
#   configuration 2   TDX: the TD quote is an Intel TDX quote; SNP and TPM: the evidence is present
package policy

import rego.v1

default executables := 33

default hardware := 97

default configuration := 36

trust_claims := {
	"executables": executables,
	"hardware": hardware,
	"configuration": configuration,
	"file-system": 0,
	"instance-identity": 0,
	"runtime-opaque": 0,
	"storage-opaque": 0,
	"sourced-data": 0,
}

pattern_pcrs := ["pcr03", "pcr08", "pcr09", "pcr11", "pcr12"]

# Which evidence this is: the reference-value prefix and the measured PCRs.
platform := {"prefix": "snp", "pcrs": input["az-snp-vtpm"].tpm} if input["az-snp-vtpm"]

platform := {"prefix": "tdx", "pcrs": input["az-tdx-vtpm"].tpm} if input["az-tdx-vtpm"]

platform := {"prefix": "tpm", "pcrs": input.tpm} if input.tpm

reference(pcr) := query_reference_value(concat("_", [platform.prefix, pcr]))

unregistered contains pcr if {
	some pcr in pattern_pcrs
	reference(pcr) == null
}

# A registered PCR the evidence does not match (or does not report at all).
mismatched contains pcr if {
	some pcr in pattern_pcrs
	refs := reference(pcr)
	refs != null
	not matches(pcr, refs)
}

# A helper, so that `not` sees only bound arguments: Rego evaluates the ref argument of `in`
# before the negation, so `not x in refs` is undefined (not true) when x itself is undefined
# (docs/rego.md).
matches(pcr, refs) if platform.pcrs[pcr] in refs

executables := 3 if {
	platform
	count(unregistered) == 0
	count(mismatched) == 0
}

executables := 96 if {
	platform
	count(mismatched) > 0
}

hardware := 2 if platform

configuration := 2 if {
	platform.prefix != "tdx"
}

configuration := 2 if {
	platform.prefix == "tdx"
	input["az-tdx-vtpm"].quote.header.tee_type == "81000000"
	input["az-tdx-vtpm"].quote.header.vendor_id == "939a7233f79c4ca9940a0db3957f0607"
}
