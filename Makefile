# sightd build, dependencies and tests.
#
#   make deps    install what the build and the tests need (idempotent, quick when done)
#   make build   bin/sightd
#   make test    the whole test suite (what CI runs)
#   make bench   the Go benchmarks that the README quotes

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
HOST_ARCH := $(shell $(GO) env GOARCH)
ARCH      ?= $(HOST_ARCH)

# Root for apt-get when not already root.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# Debian packages the build and the tests use.
APT_PACKAGES := libopencv-dev pkg-config mosquitto mosquitto-clients systemd

# The TensorFlow Lite C runtime 2.9.0 (with XNNPACK) ships inside this npm package.
# The integrity is the registry's own value for this exact version: a different
# tarball is refused.
TFLITE_NPM       := tfjs-tflite-node@0.0.2
TFLITE_INTEGRITY := sha512-Zed9biOz9lkWsekvPwdEmxXnsjXJnZO8iOV0s2Y20QU15cwiPedzFEBYiGbK7smYpkJpQNNY9SukoKmUi9bk9w==
DEPS_DIR         := $(CURDIR)/third_party
TFLITE_BUNDLED   := $(DEPS_DIR)/tflite
FIXTURES_DIR     := $(DEPS_DIR)/fixtures
OPENCV_DATA      := $(DEPS_DIR)/opencv-data
FACE_NPM         := @mediapipe/face_detection@0.4.1657300184
FACE_INTEGRITY   := sha512-k5aYtTf7av7GwD3C9T4LJB/okHK/uJwFQSOmJ9OHZMlwg7SdYVMolRgDlA962OU7fIBKsrOA7f7BzD2gpzcAKw==

# TFLITE_DIR may point at a user's own LiteRT / TensorFlow Lite build laid out as
# $(TFLITE_DIR)/include/tensorflow/lite/c/c_api.h and $(TFLITE_DIR)/lib/libtensorflowlite_c.so.
# By default it is the bundled runtime for the target architecture.
TFLITE_DIR ?= $(TFLITE_BUNDLED)/linux_$(ARCH)
export CGO_ENABLED := 1
export CGO_CFLAGS  := -I$(TFLITE_DIR)/include $(CGO_CFLAGS)
# $ORIGIN/../lib/sightd first: an installed binary finds the runtime that
# `make install` puts beside it. ($$ is make's $; the value reaches the linker
# without a shell, so it takes no quotes.)
export CGO_LDFLAGS := -Wl,-rpath,$$ORIGIN/../lib/sightd -L$(TFLITE_DIR)/lib -Wl,-rpath,$(TFLITE_DIR)/lib $(CGO_LDFLAGS)

GO_LDFLAGS := -X github.com/sightd/sightd/daemon/version.Version=$(VERSION)

.PHONY: deps deps-apt deps-tflite deps-fixtures deps-go demo-bundle bench-bundle bench-video bench-daemon build test bench fmt generate run clean

deps: deps-apt deps-tflite deps-fixtures deps-go

deps-apt:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: Debian packages present"; fi

# npm-fetch PACKAGE@VERSION INTEGRITY DIR: npm pack into DIR/x, refusing a tarball
# whose sha512 is not the pinned registry integrity.
define npm-fetch
	@command -v npm >/dev/null || { echo "deps: npm is needed to fetch $(1)" >&2; exit 1; }
	rm -rf "$(3)" && mkdir -p "$(3)/x"
	cd "$(3)" && npm pack --silent "$(1)" >/dev/null
	@tgz=$$(ls "$(3)"/*.tgz); \
	got="sha512-$$(openssl dgst -sha512 -binary "$$tgz" | base64 -w0)"; \
	if [ "$$got" != "$(2)" ]; then echo "deps: $(1) integrity mismatch: got $$got" >&2; exit 1; fi; \
	tar -xzf "$$tgz" -C "$(3)/x"
endef

# Unpacks include/ and lib/ for amd64 and arm64 from the verified npm tarball.
deps-tflite: $(TFLITE_BUNDLED)/.stamp
	@test -f "$(TFLITE_DIR)/include/tensorflow/lite/c/c_api.h" || { echo "TFLITE_DIR=$(TFLITE_DIR): no include/tensorflow/lite/c/c_api.h" >&2; exit 1; }
	@test -f "$(TFLITE_DIR)/lib/libtensorflowlite_c.so" || { echo "TFLITE_DIR=$(TFLITE_DIR): no lib/libtensorflowlite_c.so" >&2; exit 1; }
	@echo "deps: TensorFlow Lite C runtime in $(TFLITE_DIR)"

$(TFLITE_BUNDLED)/.stamp:
	$(call npm-fetch,$(TFLITE_NPM),$(TFLITE_INTEGRITY),$(DEPS_DIR)/npm-tflite)
	rm -rf "$(TFLITE_BUNDLED)"
	for a in amd64 arm64; do \
	  mkdir -p "$(TFLITE_BUNDLED)/linux_$$a/lib"; \
	  cp -r "$(DEPS_DIR)/npm-tflite/x/package/cc_deps/include" "$(TFLITE_BUNDLED)/linux_$$a/include"; \
	  cp "$(DEPS_DIR)"/npm-tflite/x/package/cc_deps/linux_$$a/*.so "$(TFLITE_BUNDLED)/linux_$$a/lib/"; \
	done
	rm -rf "$(DEPS_DIR)/npm-tflite"
	touch $@

# Test fixtures nobody here wrote: MediaPipe's float face detector (a foreign
# .tflite for the binding's tests).
deps-fixtures: $(FIXTURES_DIR)/face_detection_short_range.tflite $(OPENCV_DATA)/.stamp

$(FIXTURES_DIR)/face_detection_short_range.tflite:
	$(call npm-fetch,$(FACE_NPM),$(FACE_INTEGRITY),$(DEPS_DIR)/npm-face)
	mkdir -p "$(FIXTURES_DIR)"
	cp "$(DEPS_DIR)/npm-face/x/package/face_detection_short_range.tflite" $@
	rm -rf "$(DEPS_DIR)/npm-face"

# Debian's opencv-doc ships real photos and a street video (vtest.avi); only its
# examples/data folder is unpacked (22 MB of the package's 270 MB).
$(OPENCV_DATA)/.stamp:
	rm -rf "$(DEPS_DIR)/opencv-doc" "$(OPENCV_DATA)" && mkdir -p "$(DEPS_DIR)/opencv-doc"
	cd "$(DEPS_DIR)/opencv-doc" && { apt-get download opencv-doc 2>/dev/null || { $(SUDO) apt-get update -qq && apt-get download opencv-doc; }; }
	dpkg-deb --fsys-tarfile "$(DEPS_DIR)"/opencv-doc/opencv-doc_*.deb | \
	  tar -x -C "$(DEPS_DIR)/opencv-doc" --wildcards './usr/share/doc/opencv-doc/examples/data/*'
	mv "$(DEPS_DIR)/opencv-doc/usr/share/doc/opencv-doc/examples/data" "$(OPENCV_DATA)"
	rm -rf "$(DEPS_DIR)/opencv-doc"
	touch $@

deps-go:
	$(GO) mod download

build: deps-tflite
	$(GO) build -trimpath -ldflags '$(GO_LDFLAGS)' -o bin/sightd ./daemon

# A small real model bundle generated by quant/modelgen/demo (never downloaded).
demo-bundle: deps-tflite
	rm -rf bin/demo-bundle bin/demo-bundle.tar.gz
	$(GO) run ./quant/modelgen/demo/cmd/demo-bundle -o bin/demo-bundle -tar bin/demo-bundle.tar.gz

# The benchmark bundle (MobileNetV2-like int8 image tower, 512-d) and a
# 1280x720 MJPG street video, for `sightd bench`.
bench-bundle: deps-tflite
	rm -rf bin/bench-bundle
	$(GO) run ./quant/modelgen/demo/cmd/demo-bundle -bench -o bin/bench-bundle

bench-video: deps-fixtures
	$(GO) run ./camera/cmd/rescale -i $(OPENCV_DATA)/vtest.avi -o bin/street-720p.avi -width 1280 -height 720

# sightd bench on the benchmark bundle and the 1280x720 video.
bench-daemon: build bench-bundle bench-video
	bin/sightd bench --bundle bin/bench-bundle --source bin/street-720p.avi --frames 300

# The README's test command. Installs what it needs first.
test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem ./quant/... ./camera/...

# Regenerates the flatbuffers code of quant/modelgen (checked in; needs flatc).
generate:
	@command -v flatc >/dev/null || $(SUDO) apt-get install -y -qq flatbuffers-compiler
	$(GO) generate ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# The first run: the demo bundle, a street video in a loop, two demo rules,
# the local API on 127.0.0.1:8080.
run: deps build demo-bundle
	bin/sightd run -c daemon/config/demo.yml

clean:
	rm -rf bin

# ---- install / uninstall -------------------------------------------------
# The installed layout. The unit's ExecStart (/usr/local/bin/sightd) and the
# binary's rpath ($ORIGIN/../lib/sightd) depend on it, so it has no PREFIX.
BINDIR  := /usr/local/bin
LIBDIR  := /usr/local/lib/sightd
UNITDIR := /usr/local/lib/systemd/system
CONFDIR := /etc/sightd
# Root for the system itself; a DESTDIR (a package's staging tree) needs none.
ISUDO   := $(if $(DESTDIR),,$(SUDO))

.PHONY: install uninstall

# make build && sudo make install, or make install (it asks sudo).
install: build
	$(ISUDO) install -D -m 0755 bin/sightd "$(DESTDIR)$(BINDIR)/sightd"
	$(ISUDO) install -d -m 0755 "$(DESTDIR)$(LIBDIR)"
	$(ISUDO) install -m 0644 "$(TFLITE_DIR)"/lib/*.so "$(DESTDIR)$(LIBDIR)/"
	$(ISUDO) install -D -m 0644 systemd/sightd.service "$(DESTDIR)$(UNITDIR)/sightd.service"
	@if [ -z "$(DESTDIR)" ] && ! getent passwd sightd >/dev/null; then \
	  echo "install: creating the system user sightd (groups sightd, video)"; \
	  $(ISUDO) useradd --system --user-group --groups video --home-dir /var/lib/sightd \
	    --no-create-home --shell /usr/sbin/nologin sightd; \
	fi
	$(if $(DESTDIR),,$(ISUDO) install -d -o sightd -g sightd -m 0750 /var/lib/sightd)
	$(ISUDO) install -d -m 0755 "$(DESTDIR)$(CONFDIR)"
	@if [ -e "$(DESTDIR)$(CONFDIR)/sightd.yml" ]; then \
	  echo "install: $(CONFDIR)/sightd.yml exists; the example is not installed"; \
	else \
	  $(ISUDO) install $(if $(DESTDIR),-m 0644,-m 0640 -g sightd) daemon/config/sightd.example.yml "$(DESTDIR)$(CONFDIR)/sightd.yml"; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then $(ISUDO) systemctl daemon-reload; fi
	@echo "install: done; edit $(CONFDIR)/sightd.yml, then: systemctl enable --now sightd"

uninstall:
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
	  $(ISUDO) systemctl disable --now sightd.service 2>/dev/null || true; \
	fi
	$(ISUDO) rm -f "$(DESTDIR)$(BINDIR)/sightd" "$(DESTDIR)$(UNITDIR)/sightd.service"
	$(ISUDO) rm -rf "$(DESTDIR)$(LIBDIR)"
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then $(ISUDO) systemctl daemon-reload; fi
	@echo "uninstall: kept $(CONFDIR) (configuration), /var/lib/sightd (database, models, snapshots)"
	@echo "uninstall: and the user sightd; remove them by hand if you want them gone"
