/*
 * ct_log.h - levelled logfmt logging to stderr.
 *
 * Never pass secret material (keys, resource bytes, tokens, passwords) to these functions;
 * log identifiers and lengths instead.
 */
#ifndef CT_LOG_H
#define CT_LOG_H

#include "ct_status.h"

typedef enum ct_log_level { CT_LOG_DEBUG, CT_LOG_INFO, CT_LOG_WARN, CT_LOG_ERROR } ct_log_level;

/* Minimum level written; from the environment variable CT_LOG (debug|info|warn|error). */
void ct_log_init_from_env(void);
void ct_log_set_level(ct_log_level level);
void ct_log(ct_log_level level, const char *module, const char *fmt, ...) CT_PRINTF(3, 4);

#define CT_LOG_DEBUG_(mod, ...) ct_log(CT_LOG_DEBUG, mod, __VA_ARGS__)
#define CT_LOG_INFO_(mod, ...) ct_log(CT_LOG_INFO, mod, __VA_ARGS__)
#define CT_LOG_WARN_(mod, ...) ct_log(CT_LOG_WARN, mod, __VA_ARGS__)
#define CT_LOG_ERROR_(mod, ...) ct_log(CT_LOG_ERROR, mod, __VA_ARGS__)

#endif
