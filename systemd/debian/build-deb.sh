#!/usr/bin/env bash
# Builds bin/sightd_<version>_<arch>.deb from a built binary with dpkg-deb
# (`make deb ARCH=amd64|arm64` runs it; the Makefile passes the paths).
#
#   build-deb.sh ARCH BINARY TFLITE_LIBDIR OUTDIR
#
# OBJDUMP and STRIP name the target's binutils (aarch64-linux-gnu-* for a cross
# build). DEB_VERSION overrides the version taken from git.
set -euo pipefail

arch=$1 bin=$2 tflite_libdir=$3 outdir=$4
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
OBJDUMP=${OBJDUMP:-objdump}
STRIP=${STRIP:-strip}
maintainer=${DEB_MAINTAINER:-"sightd developers <sightd@example.org>"}

die() { echo "deb: $*" >&2; exit 1; }
[ -x "$bin" ] || die "no binary $bin (make build ARCH=$arch)"
case "$arch" in
amd64) machine="X86-64" ;;
arm64) machine="AArch64" ;;
*) die "unsupported architecture $arch" ;;
esac
"$OBJDUMP" -f "$bin" | grep -qi "architecture: $( [ "$arch" = amd64 ] && echo i386:x86-64 || echo aarch64)" ||
	die "$bin is not a $arch ($machine) binary"

# A Debian version must start with a digit: the last tag (v1.2.3 -> 1.2.3)
# plus the commits since it, or 0~git<date>.<commit> before the first tag.
if [ -z "${DEB_VERSION:-}" ]; then
	cd "$top"
	commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
	date=$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date +%Y%m%d)
	if tag=$(git describe --tags --abbrev=0 2>/dev/null); then
		n=$(git rev-list --count "$tag"..HEAD)
		DEB_VERSION=${tag#v}
		[ "$n" = 0 ] || DEB_VERSION="$DEB_VERSION+git$date.$n.$commit"
	else
		DEB_VERSION="0~git$date.$commit"
	fi
	# Uncommitted changes: still orderable, and visibly not a release.
	git diff --quiet HEAD 2>/dev/null || DEB_VERSION="$DEB_VERSION+dirty"
	cd - >/dev/null
fi
[[ $DEB_VERSION =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || die "bad version $DEB_VERSION"

stage=$(mktemp -d "${TMPDIR:-/tmp}/sightd-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
mkdir -p "$root/DEBIAN"

# The binary. Its RUNPATH from the build names the build tree (the Makefile's
# TFLITE_DIR and quant/tflite's cgo directive); the package's binary looks only
# beside itself: /usr/bin/../lib/sightd.
install -D -m 0755 "$bin" "$root/usr/bin/sightd"
"$STRIP" --strip-unneeded "$root/usr/bin/sightd"
chrpath -r '$ORIGIN/../lib/sightd' "$root/usr/bin/sightd" >/dev/null
runpath=$("$OBJDUMP" -p "$root/usr/bin/sightd" | awk '$1=="RUNPATH"{print $2}')
[ "$runpath" = '$ORIGIN/../lib/sightd' ] || die "RUNPATH is '$runpath'"

# The TensorFlow Lite runtime and the external delegate (dlopen'ed for a Coral).
install -d -m 0755 "$root/usr/lib/sightd"
install -m 0644 "${LITERT_LIBDIR:?LITERT_LIBDIR: the folder of libLiteRt.so}/libLiteRt.so" "$root/usr/lib/sightd/libLiteRt.so"
for l in libtensorflowlite_c.so libexternal_delegate_obj.so; do
	install -m 0644 "$tflite_libdir/$l" "$root/usr/lib/sightd/$l"
done

# The unit, pointed at the package's paths (`make install` uses /usr/local).
install -d -m 0755 "$root/lib/systemd/system"
sed -e 's|/usr/local/bin/sightd|/usr/bin/sightd|g' \
	-e 's|/usr/local/lib/sightd|/usr/lib/sightd|g' \
	-e 's|/usr/local/bin|/usr/bin|g' \
	-e 's|`make install` puts this file in /usr/local/lib/systemd/system|The sightd package puts this file in /lib/systemd/system|' \
	-e 's|that `make install` creates (useradd --system)|that the package creates (adduser --system)|' \
	"$top/systemd/sightd.service" >"$root/lib/systemd/system/sightd.service"
chmod 0644 "$root/lib/systemd/system/sightd.service"
grep -q '^ExecStart=/usr/bin/sightd ' "$root/lib/systemd/system/sightd.service" ||
	die "the unit's ExecStart does not start /usr/bin/sightd"
! grep -n '/usr/local' "$root/lib/systemd/system/sightd.service" || die "the unit still names /usr/local"

install -D -m 0644 "$top/daemon/config/sightd.example.yml" "$root/etc/sightd/sightd.yml"

doc=$root/usr/share/doc/sightd
install -d -m 0755 "$doc"
{
	echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
	echo "Upstream-Name: sightd"
	echo "Source: https://github.com/sightd/sightd"
	echo
	echo "Files: *"
	echo "Copyright: $(grep -m1 '^Copyright' "$top/LICENSE" | sed 's/^Copyright (c) //')"
	echo "License: Expat"
	sed -e '1,/^Copyright/d' -e 's/^$/./' -e 's/^/ /' "$top/LICENSE"
	echo
	echo "Files: usr/lib/sightd/*"
	echo "Copyright: The TensorFlow Authors, Google LLC"
	echo "License: Apache-2.0"
	echo " LiteRT 2.3 (libLiteRt.so), from the PyPI wheel ai-edge-litert 2.3.0;"
	echo " TensorFlow Lite 2.9 C runtime, from the npm package tfjs-tflite-node 0.0.2."
	echo " On Debian systems the full text of the Apache License 2.0 is in"
	echo " /usr/share/common-licenses/Apache-2.0."
} >"$doc/copyright"
{
	echo "sightd ($DEB_VERSION) unstable; urgency=medium"
	echo
	echo "  * Built from git $(cd "$top" && git rev-parse --short HEAD 2>/dev/null || echo unknown)."
	echo
	echo " -- $maintainer  $(cd "$top" && git log -1 --format=%aD 2>/dev/null || date -R)"
} | gzip -9n >"$doc/changelog.gz"
chmod 0644 "$doc"/*

# Depends: a package for every library that the binary and the bundled runtime
# load (objdump -p NEEDED), but the runtime itself. Debian 12 names OpenCV's
# libopencv_X.so.406 libopencv-X406; libc6's version is the newest GLIBC_
# symbol version the binaries use.
needed=$("$OBJDUMP" -p "$root/usr/bin/sightd" "$root"/usr/lib/sightd/*.so | awk '$1=="NEEDED"{print $2}' | sort -u)
deps=(adduser)
for l in $needed; do
	case "$l" in
	libtensorflowlite_c.so | libLiteRt.so) ;; # shipped
	libopencv_*.so.406) m=${l#libopencv_}; m=${m%.so.406}; deps+=("libopencv-${m//_/-}406") ;;
	libc.so.6 | libm.so.6 | libdl.so.2 | librt.so.1 | libpthread.so.0 | ld-linux-*.so.*) deps+=(libc6) ;;
	libstdc++.so.6) deps+=(libstdc++6) ;;
	libgcc_s.so.1) deps+=(libgcc-s1) ;;
	*) die "no package known for the library $l: add it to $0" ;;
	esac
done
glibc=$("$OBJDUMP" -T "$root/usr/bin/sightd" "$root"/usr/lib/sightd/*.so | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
depends=$(printf '%s\n' "${deps[@]}" | sort -u | sed "s/^libc6\$/libc6 (>= $glibc)/" | paste -sd, | sed 's/,/, /g')

install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$root/DEBIAN/"
install -m 0644 "$here/conffiles" "$root/DEBIAN/"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: sightd
Version: $DEB_VERSION
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: $depends
Suggests: mosquitto
Section: video
Priority: optional
Homepage: https://github.com/sightd/sightd
Description: camera alerts from rules written in plain words
 sightd watches cameras (V4L2, RTSP, HTTP) and raises alerts from rules such
 as "a package on the porch". It embeds frames with int8 CLIP-style
 TensorFlow Lite encoders (XNNPACK, or a Coral Edge TPU), matches them
 against the rules' text embeddings and publishes detections over MQTT, with
 Home Assistant discovery.
CONTROL

mkdir -p "$outdir"
out=$outdir/sightd_${DEB_VERSION}_$arch.deb
# Files owned by root whoever builds; xz as Debian's own packages.
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
echo "deb: $out ($(du -h "$out" | cut -f1)): Depends: $depends"
