#!/usr/bin/env bash
# Installs the real SIP peers the interop tests use (Debian packages), when missing and root.
set -u
need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v baresip >/dev/null 2>&1 || need+=(baresip-core)
# kamailio and kamcmd live in /usr/sbin (not on every PATH); TLS is a separate module package
command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ] || need+=(kamailio)
compgen -G "/usr/lib/*/kamailio/modules/tls.so" >/dev/null || need+=(kamailio-tls-modules)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-peers: missing ${need[*]} and not root with apt-get; interop tests will skip" >&2
  exit 0
fi
echo "install-peers: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || echo "install-peers: apt-get install ${need[*]} failed" >&2
exit 0
