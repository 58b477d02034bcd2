# Default resource policy: release resources to any attested TEE except the sample (development)
# TEE. Like Trustee's default it does not look at ear.status; use the "affirming" preset to
# require an affirming appraisal.
package policy

import rego.v1

default allow := false

allow if {
	data.plugin == "resource"
	not sample_evidence
}

sample_evidence if {
	some name, submod in input.submods
	submod["ear.veraison.annotated-evidence"].sample
}
