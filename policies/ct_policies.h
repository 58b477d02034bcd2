/*
 * ct_policies.h - the project's shipped Rego policies, compiled in (texts of policies/).
 */
#ifndef CT_POLICIES_H
#define CT_POLICIES_H

extern const char ct_policy_default_cpu[];
extern const char ct_policy_resource_default[];
extern const char ct_policy_resource_allow_all[];
extern const char ct_policy_resource_deny_all[];
extern const char ct_policy_resource_affirming[];
/* kata agent policies of the pattern's init-data (coco initdata render) */
extern const char ct_policy_agent_default[];
extern const char ct_policy_agent_permissive[];

#endif
