/*
 * cdh_image.c - image pull (api.ImagePullService/PullImage).
 */
#include "cdh.h"

ct_status cdh_hub_pull_image(cdh_hub *h, const char *image, const char *bundle, char **digest,
                             ct_err *err) {
  (void)h;
  (void)bundle;
  (void)digest;
  return ct_fail(err, CT_EUNSUPPORTED, "PullImage %s: image pull is not configured", image);
}
