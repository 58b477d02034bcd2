# Differential-test policy: `not` over expressions whose operands may be undefined. OPA evaluates
# call arguments that are refs, nested calls and refs in index positions before the negation (an
# undefined one fails the rule), but keeps the operands of `=`/`==` and plain terms inside it.
package policy

import rego.v1

keys := ["a1", "a2", "b1", "b2", "c", "zz"]

# membership: the ref argument of `in` is evaluated first
not_in contains k if {
	some k in keys
	not input.claims[k] in input.values
}

not_in_helper contains k if {
	some k in keys
	not listed(k)
}

listed(k) if input.claims[k] in input.values

# a user function and a built-in with a ref argument
not_fn contains k if {
	some k in keys
	not truthy(input.claims[k])
}

truthy(x) if x

not_builtin contains k if {
	some k in keys
	not is_string(input.claims[k])
}

# == and = keep their operands inside the negation; != and < do not
not_eq contains k if {
	some k in keys
	not input.claims[k] == 1
}

not_unify contains k if {
	some k in keys
	not input.claims[k] = "a"
}

not_neq contains k if {
	some k in keys
	not input.claims[k] != 1
}

not_lt contains k if {
	some k in keys
	not input.claims[k] < 2
}

# plain terms: only the index is evaluated first
not_term contains k if {
	some k in keys
	not input.claims[k]
}

not_dyn_index if not input.claims[input.claims.c]

not_nested_ref if not input.claims.a1.x

# nested calls are evaluated first, and their variables bind
not_type_name contains k if {
	some k in keys
	not type_name(input.claims[k]) == "string"
}

num := input.claims.b1 if is_number(input.claims.b1)

not_arith if not num + 1 == 2

not_iter if not type_name(input.values[_]) == "string"

# composites holding refs
not_array_arg if not [input.claims.a1, 1] == [1, 1]

not_array_head if not [input.claims.a2][0] == 1

not_set_in if not input.claims.c in {input.claims.a1, 3}

# a local variable is bound already; a field of it is a ref
not_local if {
	x := input.claims
	not x.b1 in input.values
}

not_rule_ref if not maybe in input.values

maybe := input.claims.a1

# inside comprehensions and every
comp := [k | some k in keys; not input.claims[k] in input.values]

every_not if {
	every k in ["a1", "b1"] {
		not input.claims[k] in [1, 2]
	}
}

# with keeps applying to the moved operands
not_with if not input.claims.a1 in [1] with input.claims.a1 as 1
