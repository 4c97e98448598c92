# Sourced by the bench scripts: `need tool:package ...` installs, with
# apt-get, the package of each tool that is not on the PATH.
need() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The nginx modules and Lua library of nginx + srcache + lua-resty-redis
# (benches/load/srcache.conf.in): modules, not tools, so looked for by file.
need_srcache() {
  [ ! -e /usr/lib/nginx/modules/ngx_http_srcache_filter_module.so ] ||
    [ ! -e /usr/share/lua/5.1/nginx/redis.lua ] || return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libnginx-mod-http-lua libnginx-mod-http-ndk \
    libnginx-mod-http-srcache-filter libnginx-mod-http-set-misc lua-nginx-redis >/dev/null
}
