/** The private Redis servers' image, built locally by scripts/build-redis-image.sh (TUSSILAGO_APP_REDIS_IMAGE). */
export const DEFAULT_APP_REDIS_IMAGE = "localhost/tussilago-redis:7";
