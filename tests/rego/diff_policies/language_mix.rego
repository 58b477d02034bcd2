# Differential-test policy: a mix of language features and built-ins evaluated on random input.
package policy

import rego.v1

default allow := false

allow if {
	some k, v in input.claims
	is_string(v)
	startswith(k, "a")
	not denied[k]
}

denied contains k if {
	some k, _ in input.claims
	k in {"a2", "b1"}
}

numbers := [n | some n in input.values; is_number(n)]

total := sum(numbers) if count(numbers) > 0

stats := {"count": count(numbers), "max": max(numbers), "min": min(numbers)} if count(numbers) > 0

by_type[t] := names if {
	some t in {"string", "number", "boolean", "null", "array", "object"}
	names := sort([k | some k, v in input.claims; type_name(v) == t])
	count(names) > 0
}

labels := {sprintf("%s=%v", [k, v]) | some k, v in input.claims}

all_small if every n in numbers { n < 3 }

joined := concat(",", sort([k | some k, _ in input.claims]))

upper_keys := {upper(k) | some k, _ in input.claims}

first_match := x if {
	x := [k | some k, _ in input.claims; regex.match("^[ab][0-9]$", k)][0]
} else := "none"

sizes := {k: count(v) | some k, v in input.claims; is_string(v)}

merged := object.union_n([{"base": 1}, object.filter(input.claims, ["a1", "b2"])])

f(x) := y if {
	is_number(x)
	y := x * 2
}

f(x) := x if is_string(x)

doubled := [f(v) | some v in input.values]

nested[x][y] := true if {
	some x in ["p", "q"]
	some y in input.values
	is_string(y)
}
