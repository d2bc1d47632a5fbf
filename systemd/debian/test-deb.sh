#!/usr/bin/env bash
# Tests a built sightd .deb (`make test-deb` runs it): its contents and control
# data, lintian, then a real install with apt-get on this machine, a reinstall
# over an edited configuration, remove and purge, checking after each step
# what is on the system. It refuses to run where sightd (or its user) already
# is, and purges what it installed on any failure.
#
#   test-deb.sh PATH/sightd_VERSION_ARCH.deb
set -uo pipefail

deb=$(readlink -f "$1")
arch=$(dpkg --print-architecture)
passed=0 failed=0
work=$(mktemp -d "${TMPDIR:-/tmp}/sightd-test-deb.XXXXXX")
installed_here=0

ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
check() { # check DESCRIPTION COMMAND...
	local what=$1
	shift
	if "$@" >"$work/out" 2>&1; then ok "$what"; else bad "$what"; sed 's/^/     /' "$work/out" | tail -20; fi
}
finish() {
	if [ "$installed_here" = 1 ] && dpkg-query -W -f='${Status}' sightd 2>/dev/null | grep -qv not-installed; then
		echo "test-deb: purging sightd after a failure"
		DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq sightd >/dev/null 2>&1 || dpkg --purge sightd || true
	fi
	rm -rf "$work"
	echo "test-deb: $passed passed, $failed failed"
	[ "$failed" = 0 ]
}
trap 'finish; exit $?' EXIT
apt() { DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o Dpkg::Use-Pty=0 "$@"; }
field() { dpkg-deb --field "$deb" "$1"; }
# Every path on the system that names sightd, and the accounts and overrides.
footprint() {
	find /etc /usr /lib /var -xdev \( -path /var/cache -o -path /var/log -o -path /var/tmp \) -prune -o -iname '*sightd*' -print 2>/dev/null | sort
	grep -h '^sightd:' /etc/passwd /etc/group /etc/shadow /etc/gshadow 2>/dev/null | cut -d: -f1,3 | sed 's/^/account /'
	grep -h -E '(^|[:,])sightd(,|$)' /etc/group | cut -d: -f1 | sed 's/^/member-of /'
	dpkg-statoverride --list | grep sightd | sed 's/^/statoverride /'
}

[ -f "$deb" ] || { bad "no package $1"; exit 1; }
echo "test-deb: $deb ($(du -h "$deb" | cut -f1))"

# ---- the package file -------------------------------------------------------
check "Package is sightd" test "$(field Package)" = sightd
check "Architecture is $arch" test "$(field Architecture)" = "$arch"
depends=$(field Depends)
echo "     Depends: $depends"
dpkg-deb --contents "$deb" >"$work/contents"
has() { awk -v p="$2" -v m="$1" '$6==p && $1==m && $2=="root/root"{f=1} END{exit !f}' "$work/contents"; }
check "binary ./usr/bin/sightd 0755 root" has -rwxr-xr-x ./usr/bin/sightd
check "LiteRT in ./usr/lib/sightd" has -rw-r--r-- ./usr/lib/sightd/libLiteRt.so
check "runtime in ./usr/lib/sightd" has -rw-r--r-- ./usr/lib/sightd/libtensorflowlite_c.so
check "external delegate in ./usr/lib/sightd" has -rw-r--r-- ./usr/lib/sightd/libexternal_delegate_obj.so
check "unit in ./lib/systemd/system" has -rw-r--r-- ./lib/systemd/system/sightd.service
check "example config as ./etc/sightd/sightd.yml" has -rw-r--r-- ./etc/sightd/sightd.yml
check "copyright" has -rw-r--r-- ./usr/share/doc/sightd/copyright
check "every file owned by root" bash -c "! awk '\$2!=\"root/root\"' '$work/contents' | grep ."
check "nothing under /usr/local" bash -c "! grep -F ' ./usr/local' '$work/contents'"
dpkg-deb --ctrl-tarfile "$deb" | tar -x -C "$work" ./conffiles ./postinst ./postrm 2>/dev/null
check "conffiles lists /etc/sightd/sightd.yml" grep -qx /etc/sightd/sightd.yml "$work/conffiles"
mkdir -p "$work/x" && dpkg-deb -x "$deb" "$work/x"
check "RUNPATH is \$ORIGIN/../lib/sightd" bash -c "readelf -d '$work/x/usr/bin/sightd' | grep -F 'Library runpath: [\$ORIGIN/../lib/sightd]'"
check "unit starts /usr/bin/sightd" grep -qx 'ExecStart=/usr/bin/sightd run -c /etc/sightd/sightd.yml' "$work/x/lib/systemd/system/sightd.service"

# Depends against dpkg-shlibdeps: every package that Debian's own tool finds
# for the binary and the bundled runtime must be listed.
mkdir -p "$work/shl/debian"
printf 'Source: sightd\n\nPackage: sightd\nArchitecture: any\n' >"$work/shl/debian/control"
if (cd "$work/shl" && dpkg-shlibdeps -O -l"$work/x/usr/lib/sightd" "$work/x/usr/bin/sightd" "$work/x"/usr/lib/sightd/*.so) >"$work/shlibs" 2>"$work/shlibs.err"; then
	missing=""
	for p in $(sed 's/^shlibs:Depends=//' "$work/shlibs" | tr ',' '\n' | sed 's/(.*//; s/|.*//; s/ //g' | sort -u); do
		echo "$depends" | tr ',' '\n' | sed 's/(.*//; s/ //g' | grep -qx "$p" || missing="$missing $p"
	done
	check "Depends covers dpkg-shlibdeps ($(sed 's/^shlibs:Depends=//' "$work/shlibs"))" test -z "$missing"
	[ -z "$missing" ] || echo "     missing from Depends:$missing"
else
	bad "dpkg-shlibdeps failed"
	sed 's/^/     /' "$work/shlibs.err"
fi

if command -v lintian >/dev/null; then
	# Errors fail the test; warnings are shown (hardening-no-pie: Go's default
	# build mode). binary-without-manpage: sightd documents itself with --help
	# and the README.
	lintian --tag-display-limit 0 --suppress-tags binary-without-manpage,no-manual-page "$deb" >"$work/lintian" 2>&1
	sed 's/^/     /' "$work/lintian"
	check "lintian: no errors" bash -c "! grep -q '^E:' '$work/lintian'"
else
	echo "test-deb: WARNING: lintian is not installed: NOT RUN (make test-deb installs it)"
	bad "lintian available"
fi

# ---- install, reinstall, remove, purge on this machine ----------------------
if dpkg-query -W -f='${Status}' sightd 2>/dev/null | grep -qv not-installed ||
	getent passwd sightd >/dev/null || getent group sightd >/dev/null || [ -e /var/lib/sightd ] || [ -e /etc/sightd ]; then
	bad "this machine already has sightd (package, user, /etc/sightd or /var/lib/sightd): not installing over it; run make test-deb on a clean machine"
	exit 1
fi
footprint >"$work/before"
installed_here=1

check "apt-get install ./$(basename "$deb")" apt install "$deb"
check "dpkg says installed" bash -c "dpkg-query -W -f='\${Status}' sightd | grep -qx 'install ok installed'"
check "/usr/bin/sightd loads LiteRT from /usr/lib/sightd and runs TensorFlow Lite 2.9" bash -c "/usr/bin/sightd version | grep -q 'LiteRT 2.3.0 (CpuAccelerator .*, /usr/lib/sightd/libLiteRt.so); TensorFlow Lite 2.9'"
check "the runtime loads from /usr/lib/sightd" bash -c "[ \"\$(readlink -f \"\$(ldd /usr/bin/sightd | awk '\$1==\"libtensorflowlite_c.so\"{print \$3}')\")\" = /usr/lib/sightd/libtensorflowlite_c.so ]"
check "system user sightd (uid < 1000, home /var/lib/sightd, no shell)" bash -c '
	IFS=: read -r _ _ uid _ _ home shell < <(getent passwd sightd)
	[ "$uid" -lt 1000 ] && [ "$home" = /var/lib/sightd ] && [ "$shell" = /usr/sbin/nologin ]'
check "sightd in groups sightd and video" bash -c "id -nG sightd | tr ' ' '\n' | grep -qx video && id -gn sightd | grep -qx sightd"
check "/var/lib/sightd sightd:sightd 0750" bash -c "[ \"\$(stat -c '%U:%G %a' /var/lib/sightd)\" = 'sightd:sightd 750' ]"
check "/etc/sightd/sightd.yml root:sightd 0640" bash -c "[ \"\$(stat -c '%U:%G %a' /etc/sightd/sightd.yml)\" = 'root:sightd 640' ]"
# config check also loads model.bundle, which the package does not ship: the
# only problem it may find in the installed example is that bundle.
check "user sightd reads and validates its configuration (only the bundle is missing)" bash -c '
	out=$(runuser -u sightd -- /usr/bin/sightd config check -c /etc/sightd/sightd.yml 2>&1); rc=$?
	[ "$rc" -eq 2 ] && [ "$out" = "sightd: invalid configuration:
model.bundle: stat /var/lib/sightd/bundle.tar.gz: no such file or directory" ]'
check "user nobody cannot read it" bash -c "! runuser -u nobody -- cat /etc/sightd/sightd.yml"
check "the installed unit verifies" systemd-analyze verify --man=no /lib/systemd/system/sightd.service
check "not enabled on install" bash -c "! ls /etc/systemd/system/*.wants/sightd.service 2>/dev/null | grep ."
check "not started on install" bash -c "! pgrep -x sightd"

# An edited configuration survives a reinstall (an upgrade's code path).
echo "# edited by test-deb" >>/etc/sightd/sightd.yml
check "reinstall with dpkg -i" dpkg -i "$deb"
check "edited configuration kept" grep -qx '# edited by test-deb' /etc/sightd/sightd.yml
check "no .dpkg-new/.dpkg-dist beside it" bash -c "! ls /etc/sightd | grep -q dpkg-"

check "apt-get remove sightd" apt remove sightd
check "dpkg says config-files after remove" bash -c "dpkg-query -W -f='\${Status}' sightd | grep -qx 'deinstall ok config-files'"
check "program, runtime and unit gone after remove" bash -c "[ ! -e /usr/bin/sightd ] && [ ! -e /usr/lib/sightd ] && [ ! -e /lib/systemd/system/sightd.service ]"
check "configuration, state and user kept after remove" bash -c "[ -f /etc/sightd/sightd.yml ] && [ -d /var/lib/sightd ] && getent passwd sightd >/dev/null"
touch /var/lib/sightd/leftover-db
check "apt-get purge sightd" apt purge sightd
check "dpkg no longer knows sightd" bash -c "! dpkg-query -W -f='\${Status}' sightd 2>/dev/null | grep -q ok"
check "/etc/sightd and /var/lib/sightd gone after purge" bash -c "[ ! -e /etc/sightd ] && [ ! -e /var/lib/sightd ]"
check "user and group sightd gone after purge" bash -c "! getent passwd sightd && ! getent group sightd"
footprint >"$work/after"
check "nothing of sightd left on the system" diff -u "$work/before" "$work/after"
installed_here=0
