#!/usr/bin/env bash
# The root file system of each image, from built binaries: the binaries
# (stripped), exactly the shared libraries they load (from this Debian),
# CA certificates, a passwd/group with the non-root user 65532, and the
# directories the components write. Used by images/Dockerfile (in its build
# stage) and by images/build-oci (no Docker): one definition of what is in
# an image.
#
#   images/rootfs.sh BIN_DIR OUT_DIR
#
# writes OUT_DIR/manager, OUT_DIR/scheduler, OUT_DIR/dfdaemon.
set -euo pipefail
bin_dir=$1
out=$2

# component: binaries
declare -A components=(
  [manager]="manager"
  [scheduler]="scheduler"
  [dfdaemon]="dfdaemon dfget"
)

copy_with_libraries() { # binary root
  local binary=$1 root=$2
  install -D -m 0755 "$binary" "$root/usr/local/bin/$(basename "$binary")"
  strip --strip-debug "$root/usr/local/bin/$(basename "$binary")"
  # Every library the dynamic loader resolves, and the loader itself, at the same paths.
  ldd "$binary" | awk '/=> \//{print $3} /^\s*\/[^ ]+ \(/{print $1}' | while read -r lib; do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
}

for name in "${!components[@]}"; do
  root="$out/$name"
  rm -rf "$root"
  mkdir -p "$root"/{etc/ssl/certs,tmp,var/lib/darter,run/darter}
  chmod 1777 "$root/tmp"
  for b in ${components[$name]}; do
    [ -x "$bin_dir/$b" ] || { echo "rootfs.sh: $bin_dir/$b is missing (build it first)" >&2; exit 1; }
    copy_with_libraries "$bin_dir/$b" "$root"
  done
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/var/lib/darter:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
done
echo "rootfs.sh: ${!components[*]} in $out"
