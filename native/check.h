/*
 * Checks shared by the addons (issue 18 item 3): every N-API status is looked at, and what must always
 * hold is asserted. Include this first in each .c file: assertions stay on whatever the build defines
 * (node-gyp's Release does not define NDEBUG, and this header makes sure of it).
 *
 * NAPI_CALL(env, call): on a status other than napi_ok, throws a JavaScript Error (code EADDON) naming
 * the call and N-API's message, unless an exception is pending already, and returns NULL from the
 * enclosing function (a napi_callback). NAPI_CALL_RET(env, call, ret) returns `ret` instead.
 * NAPI_OK(call): for calls whose failure leaves nothing to throw into (finalizers, module init's
 * registrations, threads): asserted.
 */
#ifndef DHTFS_CHECK_H
#define DHTFS_CHECK_H
#undef NDEBUG
#include <assert.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdio.h>

static inline void napi_check_throw(napi_env env, napi_status status, const char *call, const char *file, int line) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
  const napi_extended_error_info *info = NULL;
  const char *why = napi_get_last_error_info(env, &info) == napi_ok && info && info->error_message ? info->error_message : "failed";
  char msg[512];
  snprintf(msg, sizeof msg, "N-API call %s: %s (status %d, %s:%d)", call, why, (int)status, file, line);
  napi_throw_error(env, "EADDON", msg);
}

#define NAPI_CALL_RET(env, call, ret)                                  \
  do {                                                                 \
    napi_status napi_check_st_ = (call);                               \
    if (napi_check_st_ != napi_ok) {                                   \
      napi_check_throw((env), napi_check_st_, #call, __FILE__, __LINE__); \
      return ret;                                                      \
    }                                                                  \
  } while (0)
#define NAPI_CALL(env, call) NAPI_CALL_RET(env, call, NULL)

#define NAPI_OK(call)                              \
  do {                                             \
    napi_status napi_check_st_ = (call);           \
    assert(napi_check_st_ == napi_ok && #call);    \
    (void)napi_check_st_;                          \
  } while (0)

#endif
